"""Schema evolution of the Iceberg tables users already have in their data folders.

When a table's schema changes meaning (a new column, a field that becomes nullable), a table
written by an older version is evolved in place: the schema change and the rewrite of the rows
that gives them the new meaning land in one Iceberg commit, so a reader sees the old table or the
new one, never a mix. A commit that loses a race (another process evolved or wrote the table
first) re-reads the table and decides again; a table that is already current is left alone.

The rewrite reads the whole table into memory once (a one-time migration of a table of daily
predictions or monitoring rows); it uses `overwrite`, not `upsert`, which pyiceberg cannot run
after `add_column` (iceberg-python #2467).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pyarrow as pa


def evolve(
    table: Any,
    outdated: Callable[[Any], bool],
    change: Callable[[Any], None],
    rewrite: Callable[[pa.Table], pa.Table],
    attempts: int = 10,
) -> Any:
    """Evolve `table` if `outdated(schema)`: apply `change(update_schema)` and replace every row
    by `rewrite(rows)` in one commit. Returns the current table."""
    from pyiceberg.exceptions import CommitFailedException

    for attempt in range(1, attempts + 1):
        if not outdated(table.schema()):
            return table
        try:
            with table.transaction() as tx:
                with tx.update_schema() as update:
                    change(update)
                rows = table.scan().to_arrow()  # the rows as they were before the change
                if rows.num_rows:
                    with warnings.catch_warnings():
                        warnings.filterwarnings("ignore", "Delete operation did not match")
                        tx.overwrite(rewrite(rows))
        except CommitFailedException:
            if attempt == attempts:
                raise
        table = table.refresh()
    return table
