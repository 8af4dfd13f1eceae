-- External tables over the landing zone for dbt-trino's `landing` source (prod).
-- Run once per environment; new days appear after `CALL system.sync_partition_metadata(...)`,
-- which the daily job can run before dbt.
CREATE SCHEMA IF NOT EXISTS hive.landing WITH (location = 's3://mlops-lake/landing/');

CREATE TABLE IF NOT EXISTS hive.landing.customers (
    customer_id bigint, signup_at timestamp(6) with time zone, country varchar,
    acquisition_channel varchar, plan varchar, birth_year integer, email_opt_in boolean,
    dt date
) WITH (external_location = 's3://mlops-lake/landing/customers/', format = 'PARQUET',
        partitioned_by = ARRAY['dt']);

CREATE TABLE IF NOT EXISTS hive.landing.orders (
    order_id bigint, customer_id bigint, ordered_at timestamp(6) with time zone, amount double,
    items integer, discount_pct double, status varchar,
    dt date
) WITH (external_location = 's3://mlops-lake/landing/orders/', format = 'PARQUET',
        partitioned_by = ARRAY['dt']);

CREATE TABLE IF NOT EXISTS hive.landing.support_tickets (
    ticket_id bigint, customer_id bigint, created_at timestamp(6) with time zone,
    updated_at timestamp(6) with time zone, category varchar, priority varchar, status varchar,
    dt date
) WITH (external_location = 's3://mlops-lake/landing/support_tickets/', format = 'PARQUET',
        partitioned_by = ARRAY['dt']);

CREATE TABLE IF NOT EXISTS hive.landing.payments (
    order_id bigint, customer_id bigint, paid_at timestamp(6) with time zone,
    payment_method varchar, ship_country varchar, device varchar,
    dt date
) WITH (external_location = 's3://mlops-lake/landing/payments/', format = 'PARQUET',
        partitioned_by = ARRAY['dt']);

CREATE TABLE IF NOT EXISTS hive.landing.chargebacks (
    chargeback_id bigint, order_id bigint, customer_id bigint,
    reported_at timestamp(6) with time zone, reason varchar, amount double,
    dt date
) WITH (external_location = 's3://mlops-lake/landing/chargebacks/', format = 'PARQUET',
        partitioned_by = ARRAY['dt']);

CALL hive.system.sync_partition_metadata('landing', 'customers', 'ADD');
CALL hive.system.sync_partition_metadata('landing', 'orders', 'ADD');
CALL hive.system.sync_partition_metadata('landing', 'support_tickets', 'ADD');
CALL hive.system.sync_partition_metadata('landing', 'payments', 'ADD');
CALL hive.system.sync_partition_metadata('landing', 'chargebacks', 'ADD');
