-- One row per ticket in its latest known state.
with

events as (
    select * from {{ ref('stg_support_tickets') }}
),

latest as (
    select
        *,
        row_number() over (
            partition by ticket_id order by updated_at desc, landing_date desc
        ) as state_rank
    from events
),

final as (
    select
        ticket_id,
        customer_id,
        ticket_category,
        ticket_priority,
        ticket_status,
        created_at,
        case when ticket_status = 'resolved' then updated_at end as resolved_at,
        case
            when ticket_status = 'resolved'
                then {{ dbt.datediff('created_at', 'updated_at', 'minute') }} / 60.0
        end as resolution_hours
    from latest
    where state_rank = 1
)

select * from final
