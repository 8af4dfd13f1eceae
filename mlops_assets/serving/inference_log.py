"""The inference log: every online prediction appended to an Iceberg table in small batches.

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
    ]
)
_STOP = None
_EMPTY = object()


def table_name(model: str) -> str:
    return f"predictions.{model}_online"


def ensure_table(cat: Any, model: str) -> Any:
    """The model's inference log table, partitioned by request day."""
    from mlops_assets.serving.iceberg import partitioned_table

    return partitioned_table(cat, table_name(model), SCHEMA, "request_date")


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
    ) -> None:
        latency_ms = latency_seconds * 1000.0
        micros = int(at.timestamp() * 1_000_000)
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
        for (customer, score, prediction, band, rule, version, arm), used in zip(
            zip(*columns, strict=True), features, strict=True
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
    columns = list(zip(*rows, strict=True))
    micros = pa.array(columns[10], pa.int64())
    requested_at = micros.cast(pa.timestamp("us", tz="UTC"))
    days = pa.array([m // 86_400_000_000 for m in columns[10]], pa.int32()).cast(pa.date32())
    return pa.table(
        [pa.array(c, f.type) for c, f in zip(columns[:10], SCHEMA, strict=False)]
        + [requested_at, days],
        schema=SCHEMA,
    )


def _writer_main(
    q: Any, settings_dump: dict, model: str, flush_rows: int, flush_seconds: float
) -> None:
    """The writer process: batch, commit, repeat; drain and commit on the stop marker."""
    import os
    import signal

    from mlops_assets.serving.iceberg import catalog

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
