{{ config(tags=["feature_table"]) }}
-- Point-in-time order features for fraud: one row per order (entity order_id, clock event_timestamp
-- = ordered_at). Besides the order's own attributes, every value comes from the customer's orders
-- strictly before it: not the order itself, nothing later. Feast reads this table. Float aggregates
-- are rounded to 6 decimals, so the training sets built from it are bit-for-bit reproducible.
with

orders as (
    select order_id, customer_id, ordered_at, amount_usd, item_count, discount_pct
    from {{ ref('fct_orders') }}
),

payments as (
    select * from {{ ref('fct_payments') }}
),

customers as (
    select customer_id, signup_at from {{ ref('dim_customers') }}
),

placed as (
    select
        orders.*,
        payments.payment_method,
        payments.device,
        payments.ship_country_code,
        payments.ship_country_mismatch
    from orders
    left join payments
        on payments.order_id = orders.order_id
),

-- The customer's orders of the 90 days before each order (the join stays bounded by customer).
history as (
    select
        placed.order_id,
        cast(sum(case when earlier.ordered_at >= {{ dbt.dateadd('hour', -24, 'placed.ordered_at') }} then 1 else 0 end) as bigint) as customer_orders_prev_24h,
        cast(sum(case when earlier.ordered_at >= {{ dbt.dateadd('day', -7, 'placed.ordered_at') }} then 1 else 0 end) as bigint) as customer_orders_prev_7d,
        cast(count(*) as bigint) as customer_orders_prev_90d,
        avg(earlier.amount_usd) as avg_amount_prev_90d_usd,
        count(distinct case when earlier.ordered_at >= {{ dbt.dateadd('day', -30, 'placed.ordered_at') }} then earlier.ship_country_code end) as prev_ship_countries_30d,
        max(case when earlier.ordered_at >= {{ dbt.dateadd('day', -30, 'placed.ordered_at') }} and earlier.ship_country_code = placed.ship_country_code then 1 else 0 end) as ship_country_seen_30d
    from placed
    inner join placed as earlier
        on earlier.customer_id = placed.customer_id
        and earlier.ordered_at < placed.ordered_at
        and earlier.ordered_at >= {{ dbt.dateadd('day', -90, 'placed.ordered_at') }}
    group by 1
),

final as (
    select
        placed.order_id,
        placed.customer_id,
        placed.ordered_at as event_timestamp,
        placed.amount_usd,
        cast(placed.item_count as bigint) as items,
        placed.discount_pct,
        placed.payment_method,
        placed.device,
        placed.ship_country_code,
        cast(placed.ship_country_mismatch as bigint) as ship_country_mismatch,
        -- The shop's clock lets an order come seconds before the sign-up on the same day: 0 then.
        round(cast(greatest({{ dbt.datediff('customers.signup_at', 'placed.ordered_at', 'second') }}, 0) as double) / 86400, 6) as account_age_days,
        cast(coalesce(history.customer_orders_prev_24h, 0) as bigint) as customer_orders_prev_24h,
        cast(coalesce(history.customer_orders_prev_7d, 0) as bigint) as customer_orders_prev_7d,
        cast(coalesce(history.customer_orders_prev_90d, 0) as bigint) as customer_orders_prev_90d,
        -- Null for a customer's first order in 90 days (no usual spend to compare with).
        round(placed.amount_usd / nullif(history.avg_amount_prev_90d_usd, 0), 6) as amount_vs_customer_avg_90d,
        -- Distinct ship countries of the last 30 days, this order's included.
        cast(coalesce(history.prev_ship_countries_30d, 0) + 1 - coalesce(history.ship_country_seen_30d, 0) as bigint) as distinct_ship_countries_30d,
        placed.ordered_at as created_timestamp
    from placed
    left join customers
        on customers.customer_id = placed.customer_id
    left join history
        on history.order_id = placed.order_id
)

-- Sorted, so the Parquet files are byte-identical from run to run.
select * from final
order by order_id
