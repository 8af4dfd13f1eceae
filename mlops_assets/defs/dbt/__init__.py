"""The warehouse: the dbt medallion (bronze, silver, gold) as Dagster assets, dbt tests as checks."""
