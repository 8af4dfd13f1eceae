-- One row per paid order: how it was paid, from which device, where it ships, and whether that is
-- the account's own country (the latest delivery wins if a payment lands twice).
with

payments as (
    select * from {{ ref('stg_payments') }}
),

customers as (
    select customer_id, country_code from {{ ref('dim_customers') }}
),

deduplicated as (
    select
        *,
        row_number() over (partition by order_id order by landing_date desc) as delivery_rank
    from payments
),

final as (
    select
        deduplicated.order_id,
        deduplicated.customer_id,
        deduplicated.paid_at,
        deduplicated.payment_method,
        deduplicated.device,
        deduplicated.ship_country_code,
        cast(
            case when deduplicated.ship_country_code = customers.country_code then 0 else 1 end
            as integer
        ) as ship_country_mismatch
    from deduplicated
    left join customers
        on customers.customer_id = deduplicated.customer_id
    where deduplicated.delivery_rank = 1
)

select * from final
