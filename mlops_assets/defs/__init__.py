"""Dagster wiring only, one folder per domain (assets, checks, jobs, schedules, sensors), loaded by
`dg.load_from_defs_folder`; per-model definitions are built from model_configs/ by
`@dg.definitions` functions. The library code they call lives outside this folder."""
