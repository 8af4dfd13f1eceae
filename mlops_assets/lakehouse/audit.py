"""The audit log: every mutating call of the control API and every rollout command of the CLI,
one row each in the Iceberg table `audit.actions` (`lakehouse/tables.py`): who, in which tenant,
what, with which arguments, the result and when. Refused calls are recorded too. Analysts read it
with `mlops sql "select * from iceberg.audit.actions"`; the API serves a tenant its own rows."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from mlops_assets.lakehouse.tables import AUDIT

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_TEXT = 4000  # arguments and results are cut here (a row is a record, not a copy)
# One commit per entry would make every later commit slower (the metadata lists every snapshot,
# the snapshot every file): old snapshots are expired and small files compacted as it grows.
KEEP_SNAPSHOTS, MAX_SNAPSHOTS, MAX_DATA_FILES = 5, 40, 200
PROPERTIES = {
    "commit.manifest-merge.enabled": "true",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
}


def clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 14] + "...[truncated]"


@dataclass
class AuditEntry:
    source: str  # api | cli
    actor: str
    tenant: str
    role: str
    action: str
    target: str
    arguments: str  # JSON
    status: int | None
    outcome: str  # ok | refused | error
    result: str
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


class AuditLog:
    """Appends entries to the audit table, one commit per entry; a commit that loses a race with
    another writer (the CLI, a second API process) re-reads the table and tries again."""

    def __init__(self, catalog: Catalog, attempts: int = 30) -> None:
        self._catalog = catalog
        self._attempts = attempts
        self._lock = threading.Lock()
        self._table: Any = None

    def _open(self) -> Any:
        if self._table is None:
            table = AUDIT.open(self._catalog)
            if any(table.properties.get(k) != v for k, v in PROPERTIES.items()):
                with table.transaction() as transaction:
                    transaction.set_properties(PROPERTIES)
            self._table = table
        return self._table

    def _maintain(self, table: Any) -> None:
        """Compact the data files into one when they are many, and expire old snapshots (the
        rows stay; only time travel to the old snapshots goes)."""
        snapshot = table.current_snapshot()
        if snapshot and int(snapshot.summary.get("total-data-files", 0)) > MAX_DATA_FILES:
            table.overwrite(table.scan().to_arrow())
        snapshots = table.metadata.snapshots
        if len(snapshots) > MAX_SNAPSHOTS:
            current = table.current_snapshot().snapshot_id
            old = [s.snapshot_id for s in snapshots[:-KEEP_SNAPSHOTS] if s.snapshot_id != current]
            table.maintenance.expire_snapshots().by_ids(old).commit()

    def append(self, entry: AuditEntry) -> None:
        import pyarrow as pa
        from pyiceberg.exceptions import CommitFailedException
        from sqlalchemy.exc import OperationalError

        row = asdict(entry)
        row["arguments"], row["result"] = clip(row["arguments"]), clip(row["result"])
        rows = pa.Table.from_pylist([row], schema=AUDIT.schema)
        with self._lock:
            table = self._open()
            for attempt in range(1, self._attempts + 1):
                try:
                    table.append(rows)
                    break
                except (CommitFailedException, OperationalError):
                    if attempt == self._attempts:
                        raise
                    time.sleep(random.uniform(0.005, 0.05) * min(attempt, 10))
                    table.refresh()
            try:
                self._maintain(table)
            except Exception:  # another writer's commit won the race: it maintains next time
                log.debug("audit table maintenance skipped", exc_info=True)
                table.refresh()

    def read(self, tenant: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest `limit` entries, of one tenant (None: all)."""
        from pyiceberg.expressions import AlwaysTrue, EqualTo

        with self._lock:
            table = self._open()
            table.refresh()
        row_filter = EqualTo("tenant", tenant) if tenant is not None else AlwaysTrue()
        rows = table.scan(row_filter=row_filter).to_arrow()
        if rows.num_rows == 0:
            return []
        rows = rows.sort_by([("occurred_at", "descending")]).slice(0, limit)
        return rows.to_pylist()


def cli_actor() -> str:
    """Who runs a CLI command: `cli:<OS user>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def audited(
    audit: AuditLog,
    action: str,
    target: str,
    arguments: dict[str, Any],
    operation: Callable[[], T],
    tenant: str = "",
) -> T:
    """Run a CLI action and append its one audit row (ok, or the error it raised)."""
    entry = AuditEntry(
        source="cli",
        actor=cli_actor(),
        tenant=tenant,
        role="operator",
        action=f"cli {action}",
        target=target,
        arguments=json.dumps(arguments, sort_keys=True, default=str),
        status=None,
        outcome="ok",
        result="",
    )
    try:
        result = operation()
    except BaseException as err:
        entry.outcome, entry.result = "error", f"{type(err).__name__}: {err}"
        _append_quietly(audit, entry)
        raise
    entry.result = json.dumps(result, sort_keys=True, default=str)
    _append_quietly(audit, entry)
    return result


def _append_quietly(audit: AuditLog, entry: AuditEntry) -> None:
    """The action has happened: a failing audit write is logged loudly, never undoes it."""
    try:
        audit.append(entry)
    except Exception:
        log.exception("could not append to the audit log: %s", entry)
