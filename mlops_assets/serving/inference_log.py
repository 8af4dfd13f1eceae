"""The inference log: every online prediction appended to an Iceberg table in small batches.

`requested_at` is the wall clock when the request arrived; `prediction_timestamp` is the moment the
prediction is valid for (as of): the request's `request_ts` when the client gave one, else the
arrival time. A table created before `prediction_timestamp` existed gains the column (a schema
evolution; its older rows read null there) the first time a writer opens it.

The request path only puts a tuple on a queue; a writer process commits batches (every
`log_flush_rows` rows or `log_flush_seconds`), so Iceberg commits never hold the server's GIL. On a
clean shutdown the queue is drained and the last batch committed before the process exits.
Concurrent writers (several servers, or a server and a backfill) are safe: a commit that loses the
race re-reads the table and retries.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import multiprocessing as mp
import queue
import random
import time
from typing import Any

import pyarrow as pa

from mlops_assets.settings import Settings

log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.int64(), nullable=False),
        pa.field("features", pa.string(), nullable=False),  # JSON: the values the model saw
        pa.field("score", pa.float64(), nullable=False),
        pa.field("prediction", pa.int32(), nullable=False),
        pa.field("risk_band", pa.string(), nullable=False),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("arm", pa.string(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("requested_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("request_date", pa.date32(), nullable=False),
        # Added after the first release: optional, as a column added to an existing table is.
        pa.field("prediction_timestamp", pa.timestamp("us", tz="UTC"), nullable=True),
    ]
)
# Columns added since the first schema, with their documentation (evolved into older tables).
ADDED_COLUMNS = {
    "prediction_timestamp": "the moment the prediction is valid for: request_ts, else arrival",
}
_STOP = None
_EMPTY = object()


def table_name(model: str) -> str:
    return f"predictions.{model}_online"


def ensure_table(cat: Any, model: str) -> Any:
    """The model's inference log table, partitioned by request day; a table with an older schema
    gains the columns added since (never a rewrite: older rows read null there)."""
    from mlops_assets.lakehouse.catalog import partitioned_table

    table = partitioned_table(cat, table_name(model), SCHEMA, "request_date")
    return evolve_schema(cat, table_name(model), table)


def evolve_schema(cat: Any, name: str, table: Any, attempts: int = 20) -> Any:
    """Add the columns of `ADDED_COLUMNS` that `table` lacks. Another writer evolving the same
    table at the same moment is fine: a lost commit re-reads the table and looks again."""
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.types import TimestamptzType
    from sqlalchemy.exc import OperationalError

    types = {"prediction_timestamp": TimestamptzType()}
    for attempt in range(1, attempts + 1):
        present = {f.name for f in table.schema().fields}
        missing = [column for column in ADDED_COLUMNS if column not in present]
        if not missing:
            return table
        try:
            with table.update_schema() as update:
                for column in missing:
                    update.add_column(column, types[column], doc=ADDED_COLUMNS[column])
            log.info("%s: added column(s) %s", name, missing)
        except (CommitFailedException, OperationalError, ValueError) as err:
            # ValueError: a concurrent writer added the column between our read and our update.
            if attempt == attempts:
                raise
            log.debug("schema update lost a race (%s); re-reading", type(err).__name__)
            time.sleep(random.uniform(0.005, 0.05))
        table = cat.load_table(name)
    return table


def append_with_retry(table: Any, rows: pa.Table, attempts: int = 50) -> int:
    """Append in one commit; a commit that loses a race (another writer committed first) re-reads
    the table and tries again. Returns the number of attempts used."""
    from pyiceberg.exceptions import CommitFailedException
    from sqlalchemy.exc import OperationalError

    for attempt in range(1, attempts + 1):
        try:
            table.append(rows)
            return attempt
        except (CommitFailedException, OperationalError) as err:
            if attempt == attempts:
                raise
            log.debug("append lost a commit race (%s); retrying", type(err).__name__)
            time.sleep(random.uniform(0.005, 0.05) * min(attempt, 10))
            table.refresh()
    raise AssertionError("unreachable")


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


class InferenceLog:
    """The server-side handle: `record` is cheap; `close` drains and waits for the last commit."""

    def __init__(self, settings: Settings, model: str, flush_rows: int, flush_seconds: float):
        ctx = mp.get_context("spawn")
        self._queue: Any = ctx.Queue()
        self._process = ctx.Process(
            target=_writer_main,
            args=(self._queue, settings.model_dump(mode="json"), model, flush_rows, flush_seconds),
            name=f"inference-log-{model}",
            daemon=False,
        )
        self._process.start()

    def record(
        self,
        request_id: str,
        result: dict[str, list[Any]],
        features: list[dict[str, Any]],
        latency_seconds: float,
        at: dt.datetime,
        valid_for: list[dt.datetime | None] | None = None,
    ) -> None:
        """`at`: when the request arrived; `valid_for`: per row, the request_ts the client gave
        (None: the prediction is as of `at`)."""
        latency_ms = latency_seconds * 1000.0
        micros = int(at.timestamp() * 1_000_000)
        as_of = [
            micros if t is None else int(t.timestamp() * 1_000_000)
            for t in (valid_for or [None] * len(features))
        ]
        columns = [
            result[k]
            for k in (
                "customer_id",
                "score",
                "prediction",
                "risk_band",
                "rule",
                "model_version",
                "arm",
            )
        ]
        for (customer, score, prediction, band, rule, version, arm), used, valid in zip(
            zip(*columns, strict=True), features, as_of, strict=True
        ):
            self._queue.put(
                (
                    request_id,
                    int(customer),
                    json.dumps({k: _json_value(v) for k, v in used.items()}),
                    float(score),
                    int(prediction),
                    str(band),
                    str(rule),
                    str(version),
                    str(arm),
                    latency_ms,
                    micros,
                    valid,
                )
            )

    def close(self, timeout: float = 60.0) -> int | None:
        """Flush everything and stop the writer; returns its exit code."""
        self._queue.put(_STOP)
        self._queue.close()
        self._queue.join_thread()
        self._process.join(timeout)
        if self._process.is_alive():
            log.error("inference log writer did not finish in %ss; terminating", timeout)
            self._process.terminate()
            self._process.join(5)
        return self._process.exitcode


def rows_to_arrow(rows: list[tuple]) -> pa.Table:
    """Rows as `record` queues them: ten values, requested_at and prediction_timestamp as
    microseconds since the epoch (a row without the last is valid as of its arrival)."""
    rows = [r if len(r) == 12 else (*r, r[10]) for r in rows]
    columns = list(zip(*rows, strict=True))
    stamp = pa.timestamp("us", tz="UTC")
    requested_at = pa.array(columns[10], pa.int64()).cast(stamp)
    days = pa.array([m // 86_400_000_000 for m in columns[10]], pa.int32()).cast(pa.date32())
    prediction_timestamp = pa.array(columns[11], pa.int64()).cast(stamp)
    return pa.table(
        [pa.array(c, f.type) for c, f in zip(columns[:10], SCHEMA, strict=False)]
        + [requested_at, days, prediction_timestamp],
        schema=SCHEMA,
    )


def _writer_main(
    q: Any, settings_dump: dict, model: str, flush_rows: int, flush_seconds: float
) -> None:
    """The writer process: batch, commit, repeat; drain and commit on the stop marker."""
    import os
    import signal

    from mlops_assets.lakehouse.catalog import catalog

    # The server handles SIGINT/SIGTERM and stops us with the marker, after the last request.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    settings = Settings(**settings_dump)
    table = ensure_table(catalog(settings), model)
    parent = os.getppid()
    pending: list[tuple] = []
    first_at = 0.0
    stopping = False
    while not stopping:
        timeout = (
            flush_seconds if not pending else max(0.0, first_at + flush_seconds - time.monotonic())
        )
        try:
            item = q.get(timeout=timeout)
        except queue.Empty:
            item = _EMPTY
            # The server died without stopping us: the queue is drained, commit and leave.
            stopping = os.getppid() != parent
        if item is _STOP:
            stopping = True
        elif item is not _EMPTY:
            if not pending:
                first_at = time.monotonic()
            pending.append(item)
        due = pending and (
            stopping or len(pending) >= flush_rows or time.monotonic() - first_at >= flush_seconds
        )
        if due:
            batch = rows_to_arrow(pending)
            try:
                append_with_retry(table, batch)
            except Exception:  # the catalog is down: keep the rows on disk, never drop them
                spool = settings.data_dir / "serving" / model / "inference_log_spool"
                spool.mkdir(parents=True, exist_ok=True)
                path = spool / f"{time.time_ns()}.parquet"
                import pyarrow.parquet as pq

                pq.write_table(batch, path)
                log.exception("inference log commit failed; %d rows kept in %s", len(pending), path)
            pending = []
