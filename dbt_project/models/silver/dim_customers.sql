-- One row per customer: the latest delivered record wins (deliveries may repeat a customer).
with

customers as (
    select * from {{ ref('stg_customers') }}
),

latest as (
    select
        *,
        row_number() over (partition by customer_id order by landing_date desc) as delivery_rank
    from customers
),

final as (
    select
        customer_id,
        country_code,
        acquisition_channel,
        plan,
        birth_year,
        is_email_opt_in,
        signup_at,
        cast(signup_at as date) as signup_date
    from latest
    where delivery_rank = 1
)

select * from final
