"""Analyst SQL conformance: Trino queries run by the embedded engine (sqlglot -> DuckDB over the
Iceberg tables) give the answer Trino defines, computed independently with pandas over a pyiceberg
scan of the same tables; what the translation cannot reproduce exactly is refused by name.

The tables are small but realistic: the daily predictions (with actuals, two model versions, days
still waiting for labels), the monitoring table (NULL feature / model_version), the timeline and the
online inference log, written through the product's own helpers. Values compare to 1e-9 relative
(floats) or exactly; approximate Trino functions within Trino's documented error (approx_distinct:
2.3 % standard error, approx_percentile: 1 % rank error). Result dtypes follow the Trino types:
bigint -> int64 (Int64 with NULLs), integer -> int32, double -> float64, varchar -> object,
boolean -> bool, date -> datetime64, timestamp with time zone -> datetime64 UTC, arrays -> lists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from mlops_assets.lakehouse.sql import QueryError, run_sql
from mlops_assets.settings import PROJECT_ROOT
from mlops_assets.testing import scratch_settings, small_world
from tests.lakehouse.sql_cases_aggregates import AGGREGATE_CASES
from tests.lakehouse.sql_cases_dates import DATE_CASES
from tests.lakehouse.sql_cases_functions import FUNCTION_CASES
from tests.lakehouse.sql_cases_joins import JOIN_CASES
from tests.lakehouse.sql_cases_queries import QUERY_CASES
from tests.lakehouse.sql_cases_refused import P_REFUSED, REFUSED
from tests.lakehouse.sql_cases_windows import WINDOW_CASES
from tests.lakehouse.sql_lake import (
    _fraud_predictions,
    _monitoring,
    _online,
    _predictions,
    _timeline,
)
from tests.lakehouse.sql_oracles import Case, assert_same

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

CASES: dict[str, Case] = {
    **AGGREGATE_CASES,
    **WINDOW_CASES,
    **DATE_CASES,
    **JOIN_CASES,
    **FUNCTION_CASES,
    **QUERY_CASES,
}


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from mlops_assets.lakehouse.catalog import sql_catalog

    root = tmp_path_factory.mktemp("sql")
    with scratch_settings(root / "data", small_world(3000)) as settings:
        cat = sql_catalog(settings.data_dir / "iceberg")
        _predictions(cat)
        _fraud_predictions(cat)
        _monitoring(cat)
        _timeline(cat)
        _online(cat)
        yield settings


@pytest.fixture(scope="module")
def lake_catalog(lake) -> Catalog:
    """The lake's Iceberg catalog: what run_sql queries."""
    from mlops_assets.lakehouse.catalog import sql_catalog

    return sql_catalog(lake.data_dir / "iceberg")


@pytest.fixture(scope="module")
def data(lake_catalog) -> dict[str, pd.DataFrame]:
    """Every table as pandas reads it from a pyiceberg scan: the independent side."""
    names = {
        "predictions": "predictions.churn_daily",
        "fraud": "predictions.fraud_daily",
        "online": "predictions.churn_online",
        "monitoring": "monitoring.churn_daily",
        "timeline": "monitoring.timeline",
    }
    return {key: lake_catalog.load_table(name).scan().to_pandas() for key, name in names.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_trino_query_matches_pandas(lake_catalog, data, name):
    case = CASES[name]
    actual = run_sql(lake_catalog, case.sql)
    assert_same(actual, case.expected(data), case)


@pytest.mark.parametrize("name", list(REFUSED))
def test_what_cannot_be_exact_is_refused_by_name(lake_catalog, name):
    sql, named = REFUSED[name]
    with pytest.raises(QueryError) as refused:
        run_sql(lake_catalog, sql)
    assert named in str(refused.value), str(refused.value)


def test_the_suite_is_broad():
    """At least 40 queries, every category the conformance promise covers."""
    assert len(CASES) >= 40
    sql = " ".join(c.sql.lower() for c in CASES.values())
    for needle in (
        "approx_distinct",
        "approx_percentile",
        "count_if",
        " over (",
        "date_trunc",
        "date_diff",
        "date_add",
        "format(",
        "unnest",
        "with ",
        " join ",
        '"at"',
        '"day"',
        "show ",
        "describe ",
        "json_extract_scalar",
    ):
        assert needle in sql, needle


def test_mlops_sql_prints_the_refusal_without_a_traceback(lake):
    mlops = Path(sys.executable).parent / "mlops"
    env = {**os.environ, "MLOPS_DATA_DIR": str(lake.data_dir)}
    refused = subprocess.run(
        [str(mlops), "sql", f"SELECT geometric_mean(score) FROM {P_REFUSED}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert "geometric_mean()" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr + refused.stdout
    answered = subprocess.run(
        [str(mlops), "sql", "SHOW TABLES FROM iceberg.predictions"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert answered.returncode == 0, answered.stderr[-2000:]
    assert "churn_daily" in answered.stdout and "churn_online" in answered.stdout


def test_the_grafana_sql_panels_run_on_the_embedded_engine(lake_catalog):
    """The dashboard's Trino panels (deploy/monitoring) are accepted and answer here too."""
    dashboard = json.loads(
        (PROJECT_ROOT / "deploy/monitoring/grafana/dashboards/mlops-churn.json").read_text()
    )
    queries = [t["rawSQL"] for p in dashboard["panels"] for t in p["targets"] if "rawSQL" in t]
    assert queries
    for query in queries:
        assert len(run_sql(lake_catalog, query)) > 0, query
