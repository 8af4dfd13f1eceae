"""Incremental reads of an append-only Iceberg table (the inference log): only the rows appended
since a cursor, an Iceberg snapshot id.

The snapshots after the cursor are walked from the current one back to it, and only `append`
snapshots count: their ADDED data files are read, nothing else. A compaction (`replace`, or an
`overwrite` that rewrites existing rows) adds files too, but holds rows that were read before, so
it is skipped; so are the rows of an append right after a delete or overwrite (pyiceberg's
`overwrite()` commits a delete, then an append of the rewritten rows) that are not newer than
every row seen before it. When the cursor's snapshot is gone (expired), the read falls back to the rows whose
`requested_at` is after the last one seen. At most `max_rows` rows are read per call: a backlog
keeps its newest snapshots (what a sliding window needs) and says how many rows it left out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog

TIME_COLUMN = "requested_at"


@dataclass(frozen=True)
class StreamCursor:
    snapshot_id: int | None = None  # the table's current snapshot at the last read
    last_seen_us: int | None = None  # the newest `requested_at` read, microseconds since epoch

    def to_dict(self) -> dict[str, Any]:
        return {"snapshot_id": self.snapshot_id, "last_seen_us": self.last_seen_us}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> StreamCursor:
        data = data or {}
        return cls(data.get("snapshot_id"), data.get("last_seen_us"))


@dataclass
class NewRows:
    rows: pa.Table
    cursor: StreamCursor
    mode: str  # no_table | empty | snapshots | timestamp (the cursor's snapshot had expired)
    snapshots: int = 0  # append snapshots read
    skipped_rows: int = 0  # appended rows left out by the cap (older than the rows read)


def read_new_rows(
    catalog: Catalog, name: str, cursor: StreamCursor, max_rows: int, columns: tuple[str, ...] = ()
) -> NewRows:
    """The rows appended to table `name` since `cursor`, at most `max_rows` (the newest), and the
    cursor to pass next time. `columns`: the columns to read (all when empty; `requested_at` is
    always read)."""
    from pyiceberg.exceptions import NoSuchTableError

    columns = tuple(dict.fromkeys((*columns, TIME_COLUMN))) if columns else ()
    try:
        table = catalog.load_table(name)
    except NoSuchTableError:
        return NewRows(_empty(None, columns), cursor, "no_table")
    current = table.current_snapshot()
    if current is None or current.snapshot_id == cursor.snapshot_id:
        return NewRows(_empty(table, columns), cursor, "empty")
    appends, found = _appends_since(table, current, cursor.snapshot_id)
    if cursor.snapshot_id is not None and not found:
        return _by_timestamp(table, current.snapshot_id, cursor, max_rows, columns)
    picked, skipped = _newest_within(appends, max_rows)
    rows = _read_appends(table, picked, cursor.last_seen_us, columns)
    if len(rows) > max_rows:  # one snapshot larger than the cap: keep its newest rows
        skipped += len(rows) - max_rows
        rows = rows.sort_by(TIME_COLUMN).slice(len(rows) - max_rows)
    return NewRows(
        rows, _advanced(current.snapshot_id, cursor, rows), "snapshots", len(picked), skipped
    )


def _appends_since(table: Any, current: Any, since: int | None) -> tuple[list, bool]:
    """(snapshot, follows_a_rewrite) of the append snapshots after `since` up to `current`,
    newest first, and whether `since` was found among the current snapshot's ancestors. An
    append whose parent deleted or overwrote files may be the second half of a pyiceberg
    `overwrite()` (delete, then append the rewritten rows)."""
    from pyiceberg.table.snapshots import Operation, ancestors_of

    appends = []
    for snapshot in ancestors_of(current, table.metadata):
        if snapshot.snapshot_id == since:
            return appends, True
        if snapshot.summary is not None and snapshot.summary.operation == Operation.APPEND:
            parent = table.metadata.snapshot_by_id(snapshot.parent_snapshot_id or -1)
            operation = parent.summary.operation if parent and parent.summary else None
            appends.append((snapshot, operation in (Operation.DELETE, Operation.OVERWRITE)))
    return appends, False


def _read_appends(table: Any, picked: list, seen_us: int | None, columns: tuple) -> pa.Table:
    """The rows the snapshots added, oldest first; an append that follows a rewrite keeps only
    rows newer than every row seen before it (a rewrite re-adds rows read already)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    for snapshot, follows_rewrite in reversed(picked):
        rows = _read(table, _added_files(table, snapshot), columns)
        if follows_rewrite and seen_us is not None and len(rows):
            newer = pc.greater(rows[TIME_COLUMN].cast(pa.int64()), pa.scalar(seen_us, pa.int64()))
            rows = rows.filter(newer)
        if len(rows):
            newest = pc.max(rows[TIME_COLUMN].cast(pa.int64())).as_py()
            seen_us = newest if seen_us is None else max(seen_us, newest)
            parts.append(rows)
    return pa.concat_tables(parts) if parts else _empty(table, columns)


def _newest_within(appends: list, max_rows: int) -> tuple[list, int]:
    """The newest snapshots whose added rows fit `max_rows` (at least one), and the rows of the
    ones left out."""
    picked, total, skipped = [], 0, 0
    for item in appends:
        added = int((item[0].summary or {}).get("added-records") or 0)
        if skipped or (picked and total + added > max_rows):
            skipped += added  # this one and every older one
            continue
        picked.append(item)
        total += added
    return picked, skipped


def _added_files(table: Any, snapshot: Any) -> list:
    """Scan tasks of the data files `snapshot` added (its own manifests' ADDED entries)."""
    from pyiceberg.manifest import ManifestContent, ManifestEntryStatus
    from pyiceberg.table import FileScanTask

    tasks = []
    for manifest in snapshot.manifests(table.io):
        if (
            manifest.content != ManifestContent.DATA
            or manifest.added_snapshot_id != snapshot.snapshot_id
        ):
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if (
                entry.status == ManifestEntryStatus.ADDED
                and entry.snapshot_id == snapshot.snapshot_id
            ):
                tasks.append(FileScanTask(entry.data_file))
    return tasks


def _read(table: Any, tasks: list, columns: tuple[str, ...]) -> pa.Table:
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan

    schema = table.schema()
    if columns:
        schema = schema.select(*columns)
    if not tasks:
        return _empty(table, columns)
    return ArrowScan(table.metadata, table.io, schema, AlwaysTrue()).to_table(tasks)


def _by_timestamp(
    table: Any, current_id: int, cursor: StreamCursor, max_rows: int, columns: tuple[str, ...]
) -> NewRows:
    """The cursor's snapshot has expired: the rows requested after the last one seen (a full
    scan when none was seen), the newest `max_rows` of them."""
    from pyiceberg.expressions import AlwaysTrue, GreaterThan

    row_filter: Any = AlwaysTrue()
    if cursor.last_seen_us is not None:
        seen = dt.datetime.fromtimestamp(cursor.last_seen_us / 1e6, dt.UTC)
        row_filter = GreaterThan(TIME_COLUMN, seen.isoformat())
    rows = table.scan(row_filter=row_filter, selected_fields=columns or ("*",)).to_arrow()
    rows = rows.sort_by(TIME_COLUMN)
    skipped = max(0, len(rows) - max_rows)
    rows = rows.slice(skipped)
    return NewRows(rows, _advanced(current_id, cursor, rows), "timestamp", 0, skipped)


def _advanced(current_id: int, cursor: StreamCursor, rows: pa.Table) -> StreamCursor:
    import pyarrow as pa
    import pyarrow.compute as pc

    last = cursor.last_seen_us
    if len(rows) and TIME_COLUMN in rows.column_names:
        newest = pc.max(rows[TIME_COLUMN].cast(pa.int64())).as_py()
        last = newest if last is None else max(last, newest)
    return StreamCursor(current_id, last)


def _empty(table: Any, columns: tuple[str, ...]) -> pa.Table:
    import pyarrow as pa

    if table is None:
        return pa.table({c: pa.array([], pa.null()) for c in columns})
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    schema = table.schema()
    if columns:
        schema = schema.select(*columns)
    return schema_to_pyarrow(schema).empty_table()
