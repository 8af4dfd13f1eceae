"""A fix to pyiceberg 0.12 applied where this project opens a catalog (`lakehouse.catalog`).

`Transaction.table_metadata` replays the staged updates onto the table's metadata and returns a
deep copy of the result, every snapshot included; one append reads it about 20 times. On the
inference log, appended to every second, an append so took 0.08 s at 100 snapshots and 1.7 s at
2,000 (0.30 s with the cache: `benchmarks/bench_log_append.py`), and the server's writer committed
back to back. The upstream fix, approved but not released
(apache/iceberg-python#3302, carried on as #3784), caches the result keyed on the identity of both
inputs: `_updates` is a tuple that every staged update rebinds, and a refresh or commit replaces
`Table.metadata` wholesale, so a cached value is never stale. Metadata models are frozen, and
pyiceberg's callers only read them. The same code is installed here; `install` steps aside when the
installed pyiceberg already caches it."""

from __future__ import annotations

import threading
from typing import Any

_CACHE = "_mlops_table_metadata_cache"
_original: Any = None
_lock = threading.Lock()  # catalogs are opened from many threads (a writer per thread in tests)


def _cached_table_metadata(self: Any) -> Any:
    from pyiceberg.table.update import update_table_metadata

    base, updates = self._table.metadata, self._updates
    cached = self.__dict__.get(_CACHE)
    if cached is not None and cached[0] is base and cached[1] is updates:
        return cached[2]
    result = update_table_metadata(base, updates)
    self.__dict__[_CACHE] = (base, updates, result)
    return result


def install() -> bool:
    """Cache `Transaction.table_metadata`; False when pyiceberg already does (or we did)."""
    global _original
    from pyiceberg.table import Transaction

    with _lock:
        if _original is not None or "_table_metadata_cache" in Transaction.__annotations__:
            return False
        _original = Transaction.__dict__["table_metadata"]
        Transaction.table_metadata = property(_cached_table_metadata)
        return True


def uninstall() -> None:
    """pyiceberg's own property back (the benchmark's other arm, and a test)."""
    global _original
    from pyiceberg.table import Transaction

    with _lock:
        if _original is not None:
            Transaction.table_metadata = _original
            _original = None
