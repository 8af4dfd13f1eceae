{# Rows of as_of timestamps from start to stop (inclusive) every step_days days. #}
{% macro snapshot_dates(start, stop, step_days) -%}
    {{ return(adapter.dispatch('snapshot_dates')(start, stop, step_days)) }}
{%- endmacro %}

{% macro default__snapshot_dates(start, stop, step_days) -%}
    select cast(as_of as timestamp) as as_of
    from unnest(sequence({{ start }}, {{ stop }}, interval '{{ step_days }}' day)) as t(as_of)
{%- endmacro %}

{% macro duckdb__snapshot_dates(start, stop, step_days) -%}
    select cast(generate_series as timestamp) as as_of
    from generate_series({{ start }}, {{ stop }}, interval '{{ step_days }}' day)
{%- endmacro %}
