"""Every Iceberg table of the platform, in one list: name, schema, partitioning, meaning, and how a
table written by an older version is brought up to date. Writers and readers open tables through
this registry (`PREDICTIONS.open(catalog, model)`); analysts see the same names in Trino
(`iceberg.<namespace>.<table>`) and their columns in the README."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache, cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table


@dataclass(frozen=True)
class IcebergTable:
    template: str  # "<namespace>.<table>", `{model}` filled per model config
    columns: Callable[[], list[tuple[str, str, bool]]]  # (name, type, nullable), built on use
    partition_field: str | None
    description: str
    # The function in migrations.py that brings a table written by an earlier version up to date
    # (schema change and row rewrite in one commit); None when the schema never changed.
    migration: str | None = None
    # Per-model tables are keyed by the model's join keys (int64, not null), which stand in
    # the place of the default key column; `with_keys` gives the table for other keys.
    keyed: bool = False

    def with_keys(self, keys: Sequence[str]) -> IcebergTable:
        """This table for a model whose join keys are `keys` (e.g. an order model: order_id,
        customer_id), the key columns where the default one is."""
        return _with_keys(self, tuple(keys))

    def name(self, model: str | None = None) -> str:
        return self.template.format(model=model) if "{model}" in self.template else self.template

    @cached_property
    def schema(self) -> pa.Schema:
        import pyarrow as pa

        types = {
            "string": pa.string(),
            "int64": pa.int64(),
            "int32": pa.int32(),
            "float64": pa.float64(),
            "bool": pa.bool_(),
            "date": pa.date32(),
            "timestamptz": pa.timestamp("us", tz="UTC"),
        }
        return pa.schema(
            [pa.field(name, types[kind], nullable=null) for name, kind, null in self.columns()]
        )

    def open(self, catalog: Catalog, model: str | None = None) -> Table:
        """The table, created (and partitioned) if missing, migrated if old."""
        from mlops_assets.lakehouse import migrations
        from mlops_assets.lakehouse.catalog import partitioned_table

        name = self.name(model)
        table = partitioned_table(catalog, name, self.schema, self.partition_field)
        if self.migration is None:
            return table
        return getattr(migrations, self.migration)(table, catalog, name, self.schema)


PREDICTIONS = IcebergTable(
    "predictions.{model}_daily",
    lambda: [
        ("prediction_id", "string", False),
        ("customer_id", "int64", False),
        ("prediction", "int32", False),
        ("confidence", "float64", False),
        ("score", "float64", False),
        ("risk_band", "string", False),
        ("rule", "string", False),
        ("model_version", "string", False),
        ("prediction_date", "date", False),
        ("prediction_timestamp", "timestamptz", False),
        ("scored_at", "timestamptz", False),
        ("actual", "int32", True),
        ("actual_timestamp", "timestamptz", True),
        # JSON [{"feature", "contribution"}, ...]: the row's largest contributions in log-odds
        # (model config `explain.top_reasons_k`); null when off, and in rows scored before.
        ("top_reasons", "string", True),
    ],
    "prediction_date",
    "Daily batch predictions, one row per entity and scored day, with delayed actuals.",
    "predictions_as_of",
    keyed=True,
)

INFERENCE_LOG = IcebergTable(
    "predictions.{model}_online",
    lambda: [
        ("request_id", "string", False),
        # The customer the prediction is for (null for a model whose join keys have none).
        ("customer_id", "int64", True),
        ("features", "string", False),
        ("score", "float64", False),
        ("prediction", "int32", False),
        ("risk_band", "string", False),
        ("rule", "string", False),
        ("model_version", "string", False),
        ("arm", "string", False),
        ("latency_ms", "float64", False),
        ("requested_at", "timestamptz", False),
        ("request_date", "date", False),
        ("prediction_timestamp", "timestamptz", True),
        # The model config that answered, and every join key of the row as JSON
        # ({"customer_id": 42}; {"order_id": 7, "customer_id": 42}); null in rows logged before.
        ("model_name", "string", True),
        ("entity_keys", "string", True),
    ],
    "request_date",
    "The inference log: one row per online prediction, committed in small batches.",
    "inference_log_columns",
)

MONITORING = IcebergTable(
    "monitoring.{model}_daily",
    lambda: [
        ("day", "date", False),
        ("monitor", "string", False),
        ("metric", "string", False),
        ("feature", "string", True),
        ("model_version", "string", True),
        ("value", "float64", True),
        ("threshold", "float64", True),
        ("breached", "bool", False),
        ("detail", "string", False),
        ("computed_at", "timestamptz", False),
    ],
    "day",
    "One row per monitor, day and number; one `status` row per monitor and day.",
    "monitoring_nulls",
)

TIMELINE = IcebergTable(
    "monitoring.timeline",
    lambda: [
        ("occurred_at", "timestamptz", False),
        ("data_day", "date", True),
        ("event", "string", False),
        ("detail", "string", False),
        ("run_id", "string", False),
        ("model_version", "string", False),
        ("model", "string", True),
    ],
    None,
    "The last `mlops demo`'s story: what happened when, with run ids and versions.",
    "timeline_occurred_at",
)

AUDIT = IcebergTable(
    "audit.actions",
    lambda: [
        ("occurred_at", "timestamptz", False),
        ("source", "string", False),  # api | cli
        ("actor", "string", False),  # the token's subject, `cli:<OS user>`, or anonymous
        ("tenant", "string", False),  # '' when the caller was not authenticated
        ("role", "string", False),
        ("action", "string", False),  # e.g. `POST /v1/models/{model}/promote`, `cli promote`
        ("target", "string", False),  # the model (or run) acted on, '' when none
        ("arguments", "string", False),  # JSON
        ("status", "int32", True),  # the HTTP status; NULL for the CLI
        ("outcome", "string", False),  # ok | refused | error
        ("result", "string", False),  # the answer (JSON) or the error message
        ("request_id", "string", False),
    ],
    None,
    "Every mutating call of the control API and the CLI, refused ones included: one row each.",
)

DEFAULT_KEY = "customer_id"


@cache
def _with_keys(table: IcebergTable, keys: tuple[str, ...]) -> IcebergTable:
    if not table.keyed:
        raise ValueError(f"{table.template} is not keyed by a model's join keys")
    if keys == (DEFAULT_KEY,):
        return table
    columns = table.columns

    def keyed_columns() -> list[tuple[str, str, bool]]:
        out = []
        for column in columns():
            out += [(k, "int64", False) for k in keys] if column[0] == DEFAULT_KEY else [column]
        return out

    return replace(table, columns=keyed_columns)


TABLES = (PREDICTIONS, INFERENCE_LOG, MONITORING, TIMELINE, AUDIT)
