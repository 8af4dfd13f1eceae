"""How a table written by an earlier version of the platform is brought up to date, one function
per table of the registry (`tables.py`). Each is a no-op on a current table. A change of meaning
(a column that moves, '' that becomes NULL) rewrites the rows in the same commit as the schema
change (`evolution.evolve`); a column that is only added is added, never backfilled."""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from typing import Any

import pyarrow as pa

from mlops_assets.lakehouse.evolution import evolve

log = logging.getLogger(__name__)
UTC_MICROS = pa.timestamp("us", tz="UTC")


def predictions_as_of(table: Any, catalog: Any, name: str, schema: pa.Schema) -> Any:
    """Before `scored_at` existed, prediction_timestamp was the run's wall clock: it moves to
    scored_at, and prediction_timestamp becomes the as-of time (the day after the scored day).
    `top_reasons` is added at the end, never backfilled (older rows read null)."""
    table = _add_top_reasons(table)

    def add_scored_at(update: Any) -> None:
        from pyiceberg.types import TimestamptzType

        update.add_column("scored_at", TimestamptzType(), doc="wall clock of the scoring run")
        update.move_after("scored_at", "prediction_timestamp")

    def rewrite(rows: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        midnight = pc.cast(pc.cast(rows["prediction_date"], pa.timestamp("us")), UTC_MICROS)
        valid_for = pc.add(midnight, pa.scalar(dt.timedelta(days=1), pa.duration("us")))
        columns = {
            **{n: rows[n] for n in rows.column_names},
            "prediction_timestamp": valid_for.cast(UTC_MICROS),
            "scored_at": rows["prediction_timestamp"],
        }
        return pa.table({n: columns[n] for n in schema.names}, schema=schema)

    return evolve(
        table,
        outdated=lambda current: "scored_at" not in current.column_names,
        change=add_scored_at,
        rewrite=rewrite,
    )


def _add_top_reasons(table: Any, attempts: int = 10) -> Any:
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.types import StringType

    for attempt in range(1, attempts + 1):
        if "top_reasons" in table.schema().column_names:
            return table
        try:
            with table.update_schema() as update:
                update.add_column("top_reasons", StringType(), doc="top contributions, JSON")
        except (CommitFailedException, ValueError):  # a concurrent writer added it first
            if attempt == attempts:
                raise
        table = table.refresh()
    return table


_NULLABLE = ("feature", "model_version")


def monitoring_nulls(table: Any, catalog: Any, name: str, schema: pa.Schema) -> Any:
    """Before NULL meant "no feature" / "all versions", those columns held ''."""

    def make_nullable(update: Any) -> None:
        for column in _NULLABLE:
            update.update_column(column, required=False)

    def rewrite(rows: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        for column in _NULLABLE:
            values = rows[column]
            rows = rows.set_column(
                rows.schema.get_field_index(column),
                pa.field(column, pa.string(), nullable=True),
                pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values),
            )
        return rows.select(schema.names).cast(schema)

    return evolve(
        table,
        outdated=lambda current: any(current.find_field(n).required for n in _NULLABLE),
        change=make_nullable,
        rewrite=rewrite,
    )


# Columns added to the inference log since its first schema, with their documentation.
INFERENCE_LOG_ADDED = {
    "prediction_timestamp": "the moment the prediction is valid for: request_ts, else arrival",
    "model_name": "the model config that answered",
    "entity_keys": 'the row\'s join keys as a JSON object, e.g. {"customer_id": 42}',
}
# Columns that became optional: customer_id is null for a model keyed without a customer.
INFERENCE_LOG_RELAXED = ("customer_id",)


def inference_log_columns(
    table: Any, catalog: Any, name: str, schema: pa.Schema, attempts: int = 20
) -> Any:
    """Add the columns the log gained since (in their order, at the end) and make optional the
    ones that became so; no row is rewritten (older rows read null in the new columns). Several
    servers may evolve the same table at the same moment: a lost commit re-reads the table and
    looks again."""
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.types import StringType, TimestamptzType
    from sqlalchemy.exc import OperationalError

    types = {
        "prediction_timestamp": TimestamptzType(),
        "model_name": StringType(),
        "entity_keys": StringType(),
    }
    for attempt in range(1, attempts + 1):
        fields = {f.name: f for f in table.schema().fields}
        missing = [column for column in INFERENCE_LOG_ADDED if column not in fields]
        required = [c for c in INFERENCE_LOG_RELAXED if c in fields and fields[c].required]
        if not missing and not required:
            return table
        try:
            with table.update_schema() as update:
                for column in required:
                    update.update_column(column, required=False)
                for column in missing:
                    update.add_column(column, types[column], doc=INFERENCE_LOG_ADDED[column])
            log.info("%s: added column(s) %s, made optional %s", name, missing, required)
        except (CommitFailedException, OperationalError, ValueError) as err:
            # ValueError: a concurrent writer added the column between our read and our update.
            if attempt == attempts:
                raise
            log.debug("schema update lost a race (%s); re-reading", type(err).__name__)
            time.sleep(random.uniform(0.005, 0.05))
        table = catalog.load_table(name)
    return table


def timeline_occurred_at(table: Any, catalog: Any, name: str, schema: pa.Schema) -> Any:
    """The timeline's `at` (a keyword SQL users had to quote) became `occurred_at`; the table is
    replaced whole on every write, so a plain schema change is enough."""
    columns = table.schema().column_names
    if "at" in columns and "occurred_at" not in columns:
        with table.update_schema() as update:
            update.rename_column("at", "occurred_at")
    if set(table.schema().column_names) != set(schema.names):
        with table.update_schema() as update:
            update.union_by_name(schema)
    return table
