"""Lakehouse MLOps: the Dagster code location."""

import warnings

# dagster-dbt requires `sqlglot[rs]`, which sqlglot 29 deprecates with a warning at import; the
# pinned pair works (see constraints.txt), so the warning is noise for every command.
warnings.filterwarnings("ignore", message=r"sqlglot\[rs\] is deprecated", category=UserWarning)

from mlops_assets import feast_import  # noqa: E402

feast_import.install()  # before anything imports Feast: see feast_import.py
