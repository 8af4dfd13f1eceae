-- One row per order, with the net value that counts towards spend and running per-customer totals
-- (so gold can read lifetime value at any as-of time from the customer's last earlier order).
with

orders as (
    select * from {{ ref('stg_orders') }}
),

deduplicated as (
    select
        *,
        row_number() over (partition by order_id order by landing_date desc) as delivery_rank
    from orders
),

cleaned as (
    select
        order_id,
        customer_id,
        ordered_at,
        order_status,
        amount_usd,
        item_count,
        coalesce(discount_pct, 0) as discount_pct,
        coalesce(discount_pct, 0) > 0 as has_discount,
        order_status = 'completed' as is_completed,
        case when order_status = 'completed' then amount_usd else 0 end as net_amount_usd
    from deduplicated
    where delivery_rank = 1
),

final as (
    select
        *,
        sum(net_amount_usd) over (
            partition by customer_id order by ordered_at, order_id
            rows between unbounded preceding and current row
        ) as cumulative_net_amount_usd,
        count(*) over (
            partition by customer_id order by ordered_at, order_id
            rows between unbounded preceding and current row
        ) as cumulative_order_count
    from cleaned
)

select * from final
