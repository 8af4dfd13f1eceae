"""Upkeep of append-heavy Iceberg tables (the inference log): compaction of small data files,
expiry of old snapshots and removal of files no kept snapshot references.

`compact` rewrites, per partition, the data files under a target size into one file (more only
when a partition's rows exceed the table's `write.target-file-size-bytes`), in one commit that
deletes exactly the files it read and adds the rewritten ones. Writers may append meanwhile: a
commit that loses the race re-reads the table and commits the same rewrite again while every file
it read is still live (appended files are not touched), else drops its files and plans again. The
commit is an Iceberg `overwrite` snapshot (pyiceberg 0.12 cannot write the spec's `replace`)
whose summary carries `mlops.maintenance=compaction` and equal added/deleted record counts; it
adds no row, so an incremental reader (`table.incremental_append_scan`, which only reads `append`
snapshots) skips it.

Writers that commit back to back can win every race; both steps then pause them with a
`PauseForUpkeep` (lakehouse/lease.py) until their commit is in.

`expire_snapshots` drops snapshots older than a cutoff (the current one and the newest
`retain_last` always stay); `remove_orphan_files` then deletes the table's files that no kept
snapshot or metadata file references and that are older than both the cutoff and the oldest kept
snapshot (a file a writer is about to commit is seconds old). pyiceberg's expiry only edits
metadata; without that second step the compacted files would stay on disk forever."""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mlops_assets.lakehouse.lease import NO_PAUSE, NoPause, PauseForUpkeep, commit_properties

log = logging.getLogger(__name__)

MAINTENANCE_PROPERTY = "mlops.maintenance"
COMPACTION = "compaction"


# Table properties for a table appended to every second: appends merge manifests (else every
# commit adds one and each scan, append and compaction reads them all); each commit deletes
# metadata files beyond the newest 100 (else one metadata.json per commit stays forever); and
# file rewrites and deletes run under snapshot isolation: a concurrent append does not fail them
# (pyiceberg's own retry then rebases the commit on the new head instead of giving up; it still
# fails if a file it deletes was deleted meanwhile). Without it a compaction competing with a
# writer that commits every second can lose every race.
APPEND_HEAVY_PROPERTIES = {
    "commit.manifest-merge.enabled": "true",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.delete.isolation-level": "snapshot",
}


def ensure_properties(
    table: Any, properties: dict[str, str] = APPEND_HEAVY_PROPERTIES
) -> list[str]:
    """Set the properties that differ (writers pick them up with their next commit); returns
    the names changed."""
    changed = [k for k, v in properties.items() if table.properties.get(k) != v]
    if changed:
        commit_properties(table, {k: properties[k] for k in changed}, attempts=10)
    return changed


def is_compaction(snapshot: Any) -> bool:
    """Whether a snapshot is one of `compact`'s commits (rows moved between files, none added)."""
    summary = getattr(snapshot, "summary", None)
    return summary is not None and summary.get(MAINTENANCE_PROPERTY) == COMPACTION


@dataclass(frozen=True)
class LiveFile:
    """A data file of the current snapshot, as planning sees it."""

    path: str
    partition: tuple
    size_bytes: int
    records: int
    has_deletes: bool = False


@dataclass(frozen=True)
class CompactionResult:
    files_before: int  # live data files of the table before the commit
    files_after: int  # ... after it (files appended meanwhile included)
    files_rewritten: int
    files_written: int
    partitions: list[str]
    rows_before: int  # records of the rewritten files, per the table's manifests before
    rows_after: int  # records of the written files, per the table's manifests after
    bytes_before: int  # size of the rewritten files
    bytes_after: int  # size of the written files
    attempts: int
    snapshot_id: int | None  # the compaction's snapshot; None when nothing was worth rewriting
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ExpiryResult:
    snapshots_before: int
    snapshots_expired: int
    snapshots_after: int
    orphan_files_removed: int | None  # None: the table's file system cannot be listed
    orphan_bytes_removed: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_compaction(
    files: Iterable[LiveFile], target_bytes: int, min_files: int
) -> dict[tuple, list[LiveFile]]:
    """Per partition, the small files to rewrite together: those under `target_bytes` (and
    without delete files), when a partition has at least `min_files` of them."""
    small: dict[tuple, list[LiveFile]] = defaultdict(list)
    for file in files:
        if file.size_bytes < target_bytes and not file.has_deletes:
            small[file.partition].append(file)
    return {
        partition: sorted(group, key=lambda f: f.path)
        for partition, group in sorted(small.items(), key=lambda item: str(item[0]))
        if len(group) >= max(min_files, 2)
    }


def live_files(table: Any) -> dict[str, Any]:
    """The current snapshot's data files by path, as scan tasks (file and its delete files)."""
    if table.current_snapshot() is None:
        return {}
    return {task.file.file_path: task for task in table.scan().plan_files()}


def _as_live(task: Any) -> LiveFile:
    return LiveFile(
        task.file.file_path,
        tuple(task.file.partition),
        task.file.file_size_in_bytes,
        task.file.record_count,
        bool(task.delete_files),
    )


def compact(
    table: Any,
    target_file_bytes: int,
    min_files: int,
    sort_by: str | None = None,
    attempts: int = 30,
    pause: PauseForUpkeep | NoPause = NO_PAUSE,
) -> CompactionResult:
    """Rewrite the small files of each partition into one, losing and doubling nothing while
    writers append. `sort_by`: a column to order each rewritten file by (time-range reads skip
    more of it); `pause`: held once a commit lost a race, so writers let the next one in."""
    started = time.monotonic()
    written: list[Any] = []
    planned: list[Any] = []
    snapshot_id: int | None = None
    for attempt in range(1, attempts + 1):
        table.refresh()
        live = live_files(table)
        if written and all(f.file_path in live for f in written):
            break  # a commit reported as failed had landed
        if not written or not all(t.file.file_path in live for t in planned):
            _delete_files(table, written)
            groups = plan_compaction(map(_as_live, live.values()), target_file_bytes, min_files)
            if not groups:
                return _nothing_to_do(live, attempt, started)
            planned = [live[f.path] for group in groups.values() for f in group]
            pause.release()  # writers need not wait while we read and write files
            written = _rewrite(table, planned, sort_by)
        snapshot_id = _commit_rewrite(table, [t.file for t in planned], written, attempt, attempts)
        if snapshot_id is not None:
            break
        pause.hold()
    else:  # pragma: no cover - every attempt lost a race
        _delete_files(table, written)
        raise RuntimeError(f"compaction lost {attempts} commit races in a row")
    pause.release()
    return _result(table, len(live), planned, written, attempt, snapshot_id, started)


def _nothing_to_do(live: dict[str, Any], attempt: int, started: float) -> CompactionResult:
    files = len(live)
    return CompactionResult(
        files, files, 0, 0, [], 0, 0, 0, 0, attempt, None, time.monotonic() - started
    )


def _rewrite(table: Any, tasks: Sequence[Any], sort_by: str | None) -> list[Any]:
    """Read exactly the planned files (in the table's current schema) and write them back, one
    file per partition unless a partition exceeds the table's target file size."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files

    rows = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue()).to_table(tasks)
    expected = sum(t.file.record_count for t in tasks)
    if rows.num_rows != expected:
        raise RuntimeError(f"read {rows.num_rows} rows from files that hold {expected}")
    if sort_by and sort_by in rows.column_names:
        rows = rows.sort_by(sort_by)
    return list(
        _dataframe_to_data_files(
            table_metadata=table.metadata, df=rows, io=table.io, write_uuid=uuid.uuid4()
        )
    )


def _commit_rewrite(
    table: Any, old: Sequence[Any], new: Sequence[Any], attempt: int, attempts: int
) -> int | None:
    """One atomic snapshot: delete `old`, add `new`; its id. None when the commit lost a race
    (the caller re-reads the table and decides), raises on the last attempt."""
    from pyiceberg.exceptions import CommitFailedException, ValidationException
    from sqlalchemy.exc import OperationalError

    properties = {MAINTENANCE_PROPERTY: COMPACTION}
    try:
        tx = table.transaction()
        with tx.update_snapshot(snapshot_properties=properties).overwrite() as rewrite:
            for data_file in old:
                rewrite.delete_data_file(data_file)
            for data_file in new:
                rewrite.append_data_file(data_file)
        tx.commit_transaction()
        return rewrite.snapshot_id
    except (CommitFailedException, ValidationException, OperationalError) as err:
        # ValidationException: a file we delete is gone (another compaction), or, on a table
        # without APPEND_HEAVY_PROPERTIES, pyiceberg's serializable check saw concurrent appends:
        # the caller re-reads the table, and re-plans if one of our files is gone.
        if attempt == attempts:
            _delete_files(table, new)
            raise
        log.debug("compaction lost a commit race (%s); re-reading", type(err).__name__)
        time.sleep(random.uniform(0.01, 0.1))
        return None


def _result(
    table: Any,
    files_before: int,
    planned: Sequence[Any],
    written: Sequence[Any],
    attempts: int,
    snapshot_id: int | None,
    started: float,
) -> CompactionResult:
    table.refresh()
    after = live_files(table)
    mine = [after[f.file_path].file for f in written if f.file_path in after]
    return CompactionResult(
        files_before=files_before,
        files_after=len(after),
        files_rewritten=len(planned),
        files_written=len(written),
        partitions=sorted({_partition_label(table, t.file) for t in planned}),
        rows_before=sum(t.file.record_count for t in planned),
        rows_after=sum(f.record_count for f in mine),
        bytes_before=sum(t.file.file_size_in_bytes for t in planned),
        bytes_after=sum(f.file_size_in_bytes for f in mine),
        attempts=attempts,
        # None when a lost response hid which snapshot landed (the files did)
        snapshot_id=snapshot_id,
        seconds=time.monotonic() - started,
    )


def _partition_label(table: Any, data_file: Any) -> str:
    spec = table.specs()[data_file.spec_id]
    return spec.partition_to_path(data_file.partition, table.schema()) or "-"


def _delete_files(table: Any, data_files: Iterable[Any]) -> None:
    for data_file in data_files:
        try:
            table.io.delete(data_file.file_path)
        except OSError:
            log.warning("could not delete uncommitted file %s", data_file.file_path)


# -- snapshots and orphan files --------------------------------------------------------------------


def snapshots_to_expire(
    snapshots: Iterable[tuple[int, int]], keep: set[int], older_than_ms: int, retain_last: int
) -> list[int]:
    """Of (snapshot id, timestamp ms), the ids older than the cutoff, except `keep` (branch and tag
    heads) and the `retain_last` newest."""
    newest_first = sorted(snapshots, key=lambda s: s[1], reverse=True)
    kept = {sid for sid, _ in newest_first[: max(retain_last, 0)]} | keep
    return [sid for sid, ts in newest_first if ts < older_than_ms and sid not in kept]


def expire_snapshots(
    table: Any,
    older_than: dt.datetime,
    retain_last: int,
    remove_orphans: bool = True,
    attempts: int = 30,
    pause: PauseForUpkeep | NoPause = NO_PAUSE,
) -> ExpiryResult:
    """Expire the snapshots older than `older_than` (the newest `retain_last` and the current one
    stay), then, if asked, delete the files nothing kept references."""
    from pyiceberg.exceptions import CommitFailedException
    from sqlalchemy.exc import OperationalError

    started = time.monotonic()
    table.refresh()
    before = len(table.snapshots())
    cutoff_ms = int(older_than.timestamp() * 1000)
    expired: list[int] = []
    for attempt in range(1, attempts + 1):
        heads = {ref.snapshot_id for ref in table.metadata.refs.values()}
        stamps = [(s.snapshot_id, s.timestamp_ms) for s in table.snapshots()]
        expired = snapshots_to_expire(stamps, heads, cutoff_ms, retain_last)
        if not expired:
            break
        try:
            table.maintenance.expire_snapshots().by_ids(expired).commit()
            pause.release()
            break
        except (CommitFailedException, OperationalError):
            if attempt == attempts:
                raise
            pause.hold()
            time.sleep(random.uniform(0.01, 0.1))
            table.refresh()
    table.refresh()
    removed, removed_bytes = remove_orphan_files(table, older_than) if remove_orphans else (0, 0)
    return ExpiryResult(
        before,
        len(expired),
        len(table.snapshots()),
        removed,
        removed_bytes,
        time.monotonic() - started,
    )


def referenced_paths(table: Any) -> set[str]:
    """Every file the table's metadata reaches: metadata files (current and logged), statistics,
    and per kept snapshot its manifest list, manifests and their data and delete files."""
    metadata = table.metadata
    paths = {table.metadata_location}
    paths |= {entry.metadata_file for entry in metadata.metadata_log}
    paths |= {s.statistics_path for s in metadata.statistics}
    paths |= {s.statistics_path for s in getattr(metadata, "partition_statistics", [])}
    manifests: dict[str, Any] = {}
    for snapshot in table.snapshots():
        paths.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            manifests.setdefault(manifest.manifest_path, manifest)
    for path, manifest in manifests.items():
        paths.add(path)
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
            paths.add(entry.data_file.file_path)
    return paths


def remove_orphan_files(table: Any, older_than: dt.datetime) -> tuple[int | None, int]:
    """Delete the files under the table's location that nothing references and that were last
    written before both `older_than` and the oldest kept snapshot. (count, bytes); count is None
    when the table's FileIO cannot list its storage."""
    from pyiceberg.io.pyarrow import PyArrowFileIO

    if not isinstance(table.io, PyArrowFileIO):
        return None, 0
    from pyarrow.fs import FileSelector, FileType

    oldest_ms = min((s.timestamp_ms for s in table.snapshots()), default=None)
    cutoff = older_than.timestamp()
    if oldest_ms is not None:
        cutoff = min(cutoff, oldest_ms / 1000)
    scheme, netloc, root = table.io.parse_location(table.location())
    fs = table.io.fs_by_scheme(scheme, netloc)
    keep = {table.io.parse_location(p)[2] for p in referenced_paths(table)}
    count, size = 0, 0
    for sub in ("data", "metadata"):
        selector = FileSelector(f"{root.rstrip('/')}/{sub}", recursive=True, allow_not_found=True)
        for info in fs.get_file_info(selector):
            if info.type != FileType.File or info.path in keep:
                continue
            if info.mtime is None or info.mtime.timestamp() >= cutoff:
                continue
            fs.delete_file(info.path)
            count, size = count + 1, size + (info.size or 0)
    return count, size
