with

source as (
    select * from {{ source('landing', 'customers') }}
),

renamed as (
    select
        ----------  ids
        cast(customer_id as bigint) as customer_id,

        ----------  text
        upper(country) as country_code,
        lower(acquisition_channel) as acquisition_channel,
        lower(plan) as plan,

        ----------  numerics
        cast(birth_year as integer) as birth_year,

        ----------  booleans
        email_opt_in as is_email_opt_in,

        ----------  timestamps
        cast(signup_at as timestamp) as signup_at,
        cast(dt as date) as landing_date

    from source
)

select * from renamed
