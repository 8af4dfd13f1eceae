with

source as (
    select * from {{ source('landing', 'support_tickets') }}
),

renamed as (
    select
        ----------  ids
        cast(ticket_id as bigint) as ticket_id,
        cast(customer_id as bigint) as customer_id,

        ----------  text
        lower(category) as ticket_category,
        lower(priority) as ticket_priority,
        lower(status) as ticket_status,

        ----------  timestamps
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        cast(dt as date) as landing_date

    from source
)

select * from renamed
