"""Lakehouse MLOps: the Dagster code location."""
