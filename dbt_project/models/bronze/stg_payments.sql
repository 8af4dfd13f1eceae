with

source as (
    select * from {{ source('landing', 'payments') }}
),

renamed as (
    select
        ----------  ids
        cast(order_id as bigint) as order_id,
        cast(customer_id as bigint) as customer_id,

        ----------  text
        lower(payment_method) as payment_method,
        lower(device) as device,
        upper(ship_country) as ship_country_code,

        ----------  timestamps
        cast(paid_at as timestamp) as paid_at,
        cast(dt as date) as landing_date

    from source
)

select * from renamed
