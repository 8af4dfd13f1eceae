"""Landing-zone layout and validation: `<root>/<table>/dt=YYYY-MM-DD/part-0.parquet`.

`root` is a local folder or an `s3://` prefix; pyarrow's filesystem layer makes both one code path.
"""

from __future__ import annotations

import datetime as dt
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlops_assets.datagen.simulate import PRIMARY_KEYS, SCHEMAS, DayGenerator, population_for
from mlops_assets.datagen.tables import LANDING_TABLES
from mlops_assets.lakehouse.files import filesystem
from mlops_assets.world import World

assert tuple(SCHEMAS) == LANDING_TABLES

IO_THREADS = 8  # concurrent file writes / opens: round trips to an object store overlap


def _io_threads(root: str) -> int:
    """Threads for a root's file operations: local files are CPU-bound here (one thread; more
    only contend for the GIL), an object store's are round trips (they overlap)."""
    return IO_THREADS if "://" in root else 1


def partition_dir(root: str, table: str, day: dt.date) -> str:
    return f"{root.rstrip('/')}/{table}/dt={day.isoformat()}"


def write_partition(root: str, table: str, day: dt.date, data: pa.Table) -> str:
    """Replace one day of one table. Readers see the old file or the new one, never half of one:
    a local file is written aside and renamed; an object store's PUT is atomic by itself (a
    rename there is a copy and a delete, and folders do not exist)."""
    fs, base = filesystem(root)
    folder = partition_dir(base, table, day)
    final = f"{folder}/part-0.parquet"
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(folder, recursive=True)
        tmp = f"{folder}/.part-0.{uuid.uuid4().hex}.tmp"
        pq.write_table(data, tmp, filesystem=fs, compression="zstd")
        fs.move(tmp, final)
    else:
        pq.write_table(data, final, filesystem=fs, compression="zstd")
    return f"{partition_dir(root, table, day)}/part-0.parquet"


def partition_files(root: str, table: str, day: dt.date) -> list[str]:
    fs, base = filesystem(root)
    selector = pafs.FileSelector(partition_dir(base, table, day), allow_not_found=True)
    return sorted(
        info.path
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File and info.path.endswith(".parquet")
    )


@dataclass
class LandingValidation:
    """What a landing check found in one table over a set of days."""

    table: str
    files: int = 0
    rows: int = 0
    missing_days: list[str] = field(default_factory=list)
    schema_errors: list[str] = field(default_factory=list)
    null_key_rows: int = 0
    duplicate_key_rows: int = 0

    @property
    def schema_ok(self) -> bool:
        return not self.schema_errors and not self.missing_days

    def metadata(self) -> dict[str, object]:
        return {
            "table": self.table,
            "files": self.files,
            "rows": self.rows,
            "missing_days": ", ".join(self.missing_days[:10]) or "none",
            "schema_errors": "; ".join(self.schema_errors[:10]) or "none",
            "null_key_rows": self.null_key_rows,
            "duplicate_key_rows": self.duplicate_key_rows,
        }


def _schema_problems(path: str, actual: pa.Schema, expected: pa.Schema) -> list[str]:
    problems = []
    for f in expected:
        idx = actual.get_field_index(f.name)
        if idx < 0:
            problems.append(f"{path}: column {f.name!r} is missing")
        elif not actual.field(idx).type.equals(f.type):
            problems.append(
                f"{path}: column {f.name!r} is {actual.field(idx).type}, expected {f.type}"
            )
    extra = sorted(set(actual.names) - set(expected.names))
    if extra:
        problems.append(f"{path}: unexpected columns {extra}")
    return problems


def validate_landing(root: str, table: str, days: list[dt.date]) -> LandingValidation:
    """Schema, key nulls and key duplicates, per file (keys are unique within a day's delivery;
    uniqueness across days is enforced again by the bronze dbt tests)."""
    expected = SCHEMAS[table]
    keys = list(PRIMARY_KEYS[table])
    result = LandingValidation(table=table)
    fs, _ = filesystem(root)
    # Listing and opening the days' files is round trips on an object store: overlap them.
    with ThreadPoolExecutor(_io_threads(root)) as pool:
        listed = list(pool.map(lambda day: partition_files(root, table, day), days))
        opened = pool.map(
            lambda path: (path, pq.ParquetFile(path, filesystem=fs)),
            [path for files in listed for path in files],
        )
        parquets = dict(opened)
    for day, files in zip(days, listed, strict=True):
        if not files:
            result.missing_days.append(day.isoformat())
            continue
        for path in files:
            result.files += 1
            parquet = parquets[path]
            result.rows += parquet.metadata.num_rows
            result.schema_errors.extend(_schema_problems(path, parquet.schema_arrow, expected))
            present = [k for k in keys if k in parquet.schema_arrow.names]
            if len(present) < len(keys) or parquet.metadata.num_rows == 0:
                continue
            data = parquet.read(columns=present)
            null_mask = pc.is_null(data[present[0]])
            for k in present[1:]:
                null_mask = pc.or_(null_mask, pc.is_null(data[k]))
            result.null_key_rows += int(pc.sum(null_mask).as_py() or 0)
            distinct = data.select(present).group_by(present).aggregate([]).num_rows
            result.duplicate_key_rows += data.num_rows - distinct
    return result


def land_day(cfg: World, root: str, day: dt.date) -> dict[str, tuple[str, int]]:
    """Generate and write one landing day of every table: {table: (path, rows)}."""
    gen = DayGenerator(cfg, day)
    written = {}
    for table in LANDING_TABLES:
        data = gen.table(table)
        written[table] = (write_partition(root, table, day, data), data.num_rows)
    return written


def land_many(world: World, root: str, days: list[dt.date]) -> list[dict[str, tuple[str, int]]]:
    """`land_day` for each day, in order. Days are independent (each is generated from the
    world's seed and the day), so their writes overlap: on an object store each is a round trip."""
    population_for(world)  # built once, before the threads would each build it
    with ThreadPoolExecutor(_io_threads(root)) as pool:
        return list(pool.map(lambda day: land_day(world, root, day), days))


def land_days(world: World, root: str, days: int | None = None) -> dict[str, int]:
    """Land the world's first `days` days (all by default); rows per table."""
    count = min(days or world.days, world.days)
    totals: dict[str, int] = {}
    calendar = [world.start_date + dt.timedelta(days=i) for i in range(count)]
    for landed in land_many(world, root, calendar):
        for table, (_, rows) in landed.items():
            totals[table] = totals.get(table, 0) + rows
    return totals
