with

source as (
    select * from {{ source('landing', 'chargebacks') }}
),

renamed as (
    select
        ----------  ids
        cast(chargeback_id as bigint) as chargeback_id,
        cast(order_id as bigint) as order_id,
        cast(customer_id as bigint) as customer_id,

        ----------  text
        lower(reason) as chargeback_reason,

        ----------  numerics
        cast(amount as double) as chargeback_amount_usd,

        ----------  timestamps
        cast(reported_at as timestamp) as reported_at,
        cast(dt as date) as landing_date

    from source
)

select * from renamed
