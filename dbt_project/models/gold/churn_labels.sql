-- The churn label for every feature snapshot: churned = no order at all in the churn window after
-- the as-of time. A label exists only once its window has fully passed (label_available_at <= the end
-- of landed data): the delayed actuals the monitoring loop waits for.
with

features as (
    select customer_id, event_timestamp from {{ ref('customer_features') }}
),

horizon as (
    select max(data_end) as data_end from {{ ref('int_snapshot_dates') }}
),

orders as (
    select customer_id, ordered_at from {{ ref('fct_orders') }}
),

labelable as (
    select
        features.customer_id,
        features.event_timestamp,
        {{ dbt.dateadd('day', var('churn_label_window_days'), 'features.event_timestamp') }} as label_available_at
    from features
    cross join horizon
    where {{ dbt.dateadd('day', var('churn_label_window_days'), 'features.event_timestamp') }} <= horizon.data_end
),

future_orders as (
    select
        labelable.customer_id,
        labelable.event_timestamp,
        cast(count(orders.ordered_at) as bigint) as orders_in_window
    from labelable
    left join orders
        on orders.customer_id = labelable.customer_id
        and orders.ordered_at >= labelable.event_timestamp
        and orders.ordered_at < labelable.label_available_at
    group by 1, 2
),

final as (
    select
        labelable.customer_id,
        labelable.event_timestamp,
        labelable.label_available_at,
        future_orders.orders_in_window,
        cast(case when future_orders.orders_in_window = 0 then 1 else 0 end as integer) as churned
    from labelable
    inner join future_orders
        on future_orders.customer_id = labelable.customer_id
        and future_orders.event_timestamp = labelable.event_timestamp
)

-- Sorted, so the Parquet files are byte-identical from run to run.
select * from final
order by customer_id, event_timestamp
