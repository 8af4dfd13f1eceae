-- The fraud label for every order: fraudulent = a chargeback for it was reported within the fraud
-- window after the order. A label exists only once its window has fully passed (label_available_at
-- <= the end of landed data): until then a chargeback may still come.
with

orders as (
    select order_id, customer_id, ordered_at from {{ ref('fct_orders') }}
),

horizon as (
    select max(data_end) as data_end from {{ ref('int_snapshot_dates') }}
),

chargebacks as (
    select order_id, reported_at from {{ ref('fct_chargebacks') }}
),

labelable as (
    select
        orders.order_id,
        orders.customer_id,
        orders.ordered_at,
        {{ dbt.dateadd('day', var('fraud_label_window_days'), 'orders.ordered_at') }} as label_available_at
    from orders
    cross join horizon
    where {{ dbt.dateadd('day', var('fraud_label_window_days'), 'orders.ordered_at') }} <= horizon.data_end
),

charged as (
    select
        labelable.order_id,
        cast(count(chargebacks.reported_at) as bigint) as chargebacks_in_window
    from labelable
    left join chargebacks
        on chargebacks.order_id = labelable.order_id
        and chargebacks.reported_at >= labelable.ordered_at
        and chargebacks.reported_at < labelable.label_available_at
    group by 1
),

final as (
    select
        labelable.order_id,
        labelable.customer_id,
        labelable.ordered_at as event_timestamp,
        labelable.label_available_at,
        charged.chargebacks_in_window,
        cast(case when charged.chargebacks_in_window > 0 then 1 else 0 end as integer) as is_fraud
    from labelable
    inner join charged
        on charged.order_id = labelable.order_id
)

-- Sorted, so the Parquet files are byte-identical from run to run.
select * from final
order by order_id
