{{ config(tags=["feature_table"]) }}
-- Point-in-time customer features: one row per active customer per snapshot, computed only from
-- events strictly before `event_timestamp`. Feast reads this table (event_timestamp is its clock).
-- Float aggregates are rounded to 6 decimals: parallel aggregation adds in varying order, and the
-- training sets built from this table must be bit-for-bit reproducible (same data, same DVC hash).
with

snapshots as (
    select as_of from {{ ref('int_snapshot_dates') }}
),

customers as (
    select * from {{ ref('dim_customers') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
),

tickets as (
    select * from {{ ref('fct_support_tickets') }}
),

-- Only orders inside the activity window can make a customer active, so the join stays bounded.
order_window as (
    select
        snapshots.as_of,
        orders.customer_id,
        max(orders.ordered_at) as last_order_at,
        round(max(orders.cumulative_net_amount_usd), 6) as lifetime_value_usd,
        cast(max(orders.cumulative_order_count) as bigint) as order_count_lifetime,
        cast(sum(case when orders.ordered_at >= {{ dbt.dateadd('day', -30, 'snapshots.as_of') }} then 1 else 0 end) as bigint) as order_count_30d,
        cast(count(*) as bigint) as order_count_90d,
        round(sum(case when orders.ordered_at >= {{ dbt.dateadd('day', -30, 'snapshots.as_of') }} then orders.net_amount_usd else 0 end), 6) as spend_30d_usd,
        round(sum(orders.net_amount_usd), 6) as spend_90d_usd,
        round(avg(orders.amount_usd), 6) as avg_order_value_90d_usd,
        round(avg(case when orders.has_discount then 1.0 else 0.0 end), 6) as discount_order_share_90d,
        round(avg(orders.discount_pct), 6) as avg_discount_pct_90d,
        round(avg(case when orders.order_status = 'returned' then 1.0 else 0.0 end), 6) as return_share_90d
    from snapshots
    inner join orders
        on orders.ordered_at < snapshots.as_of
        and orders.ordered_at >= {{ dbt.dateadd('day', -var('activity_window_days'), 'snapshots.as_of') }}
    group by 1, 2
),

ticket_window as (
    select
        snapshots.as_of,
        tickets.customer_id,
        cast(sum(case when tickets.created_at >= {{ dbt.dateadd('day', -30, 'snapshots.as_of') }} then 1 else 0 end) as bigint) as ticket_count_30d,
        cast(count(*) as bigint) as ticket_count_90d,
        -- Open at as-of time: not resolved yet, or resolved only later.
        cast(sum(case when tickets.resolved_at is null or tickets.resolved_at >= snapshots.as_of then 1 else 0 end) as bigint) as open_ticket_count,
        cast(sum(case when tickets.ticket_priority = 'high' then 1 else 0 end) as bigint) as high_priority_ticket_count_90d
    from snapshots
    inner join tickets
        on tickets.created_at < snapshots.as_of
        and tickets.created_at >= {{ dbt.dateadd('day', -var('activity_window_days'), 'snapshots.as_of') }}
    group by 1, 2
),

joined as (
    select
        order_window.customer_id,
        order_window.as_of as event_timestamp,
        customers.country_code,
        customers.acquisition_channel,
        customers.plan,
        cast({{ dbt.datediff('customers.signup_at', 'order_window.as_of', 'day') }} as bigint) as tenure_days,
        cast(extract(year from order_window.as_of) - customers.birth_year as bigint) as age_years,
        order_window.lifetime_value_usd,
        order_window.order_count_lifetime,
        order_window.order_count_30d,
        order_window.order_count_90d,
        order_window.spend_30d_usd,
        order_window.spend_90d_usd,
        order_window.avg_order_value_90d_usd,
        order_window.discount_order_share_90d,
        order_window.avg_discount_pct_90d,
        order_window.return_share_90d,
        order_window.last_order_at,
        cast({{ dbt.datediff('order_window.last_order_at', 'order_window.as_of', 'day') }} as bigint) as days_since_last_order,
        coalesce(ticket_window.ticket_count_30d, 0) as ticket_count_30d,
        coalesce(ticket_window.ticket_count_90d, 0) as ticket_count_90d,
        coalesce(ticket_window.open_ticket_count, 0) as open_ticket_count,
        coalesce(ticket_window.high_priority_ticket_count_90d, 0) as high_priority_ticket_count_90d
    from order_window
    inner join customers
        on customers.customer_id = order_window.customer_id
        and customers.signup_at < order_window.as_of
    left join ticket_window
        on ticket_window.customer_id = order_window.customer_id
        and ticket_window.as_of = order_window.as_of
),

final as (
    select
        *,
        case
            when tenure_days < 30 then 'new'
            when days_since_last_order > 30 then 'at_risk'
            when order_count_90d >= 8 and spend_90d_usd >= 300 then 'champion'
            when order_count_90d >= 4 then 'loyal'
            else 'regular'
        end as segment,
        event_timestamp as created_timestamp
    from joined
)

-- Sorted, so the Parquet files are byte-identical from run to run.
select * from final
order by customer_id, event_timestamp
