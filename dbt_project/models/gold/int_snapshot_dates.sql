{{ config(materialized='ephemeral') }}
-- The as-of times at which customer features are snapshotted: every snapshot_interval_days from the
-- first data day (plus the minimum history), up to the end of the last landed day. Anchored on the
-- first day so existing snapshots never move when new data lands.
with

bounds as (
    select
        cast(min(ordered_at) as date) as first_day,
        cast(max(ordered_at) as date) as last_day
    from {{ ref('fct_orders') }}
),

anchors as (
    select
        cast({{ dbt.dateadd('day', var('min_history_days'), 'first_day') }} as timestamp) as first_as_of,
        cast({{ dbt.dateadd('day', 1, 'last_day') }} as timestamp) as data_end
    from bounds
),

dates as (
    {{ snapshot_dates(
        '(select first_as_of from anchors)',
        '(select data_end from anchors)',
        var('snapshot_interval_days')
    ) }}
)

select
    dates.as_of,
    anchors.data_end
from dates
cross join anchors
where dates.as_of <= anchors.data_end
