"""Monitoring: performance against delayed actuals, drift, data quality (no Dagster)."""
