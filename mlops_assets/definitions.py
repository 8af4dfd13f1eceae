"""The code location: every definition under defs/ (dg's project layout), run with the
environment's executor. Nothing heavy happens at import: no dbt parse, no model load, no network."""

from functools import cache
from pathlib import Path

import dagster as dg

from mlops_assets.resources import executor_for
from mlops_assets.settings import get_environment


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(executor=executor_for(get_environment())),
    )


@cache
def load() -> dg.Definitions:
    """The definitions, built once per process, for code that runs jobs in-process (the demo,
    tests); Dagster's own tools load `defs`."""
    return defs()
