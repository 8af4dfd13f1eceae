with

source as (
    select * from {{ source('landing', 'orders') }}
),

renamed as (
    select
        ----------  ids
        cast(order_id as bigint) as order_id,
        cast(customer_id as bigint) as customer_id,

        ----------  text
        lower(status) as order_status,

        ----------  numerics
        cast(amount as double) as amount_usd,
        cast(items as integer) as item_count,
        cast(discount_pct as double) as discount_pct,

        ----------  timestamps
        cast(ordered_at as timestamp) as ordered_at,
        cast(dt as date) as landing_date

    from source
)

select * from renamed
