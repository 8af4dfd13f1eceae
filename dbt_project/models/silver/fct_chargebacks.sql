-- One row per chargeback (deduplicated), the fraud signal that arrives weeks after the order.
with

chargebacks as (
    select * from {{ ref('stg_chargebacks') }}
),

deduplicated as (
    select
        *,
        row_number() over (partition by chargeback_id order by landing_date desc) as delivery_rank
    from chargebacks
),

final as (
    select
        chargeback_id,
        order_id,
        customer_id,
        chargeback_reason,
        chargeback_amount_usd,
        reported_at
    from deduplicated
    where delivery_rank = 1
)

select * from final
