"""A pause that table upkeep asks of a table's writers, held in a table property.

A writer that commits every second to a table with many snapshots spends about as long on each
commit as it waits between them, so its commits come back to back; a compaction's commit, which
must be built on the current snapshot, can then lose every race. When upkeep has lost a race it
takes the pause: it sets `PAUSE_PROPERTY` to the epoch milliseconds until which writers hold their
commits back (`PauseForUpkeep.hold`), commits, and gives the pause back at once (`release`).

Writers see the property with no extra read: a catalog applies a commit's updates on top of the
table's current metadata, so the metadata a writer gets back from its next commit carries the
pause. It then keeps its rows in memory and looks again every `LOOK_SECONDS` until the pause is
given back or runs out (`pause_left`). A pause never lasts longer than `MAX_PAUSE_SECONDS`, and a
value further ahead than that (a bad clock, a typo) is ignored, so a crashed upkeep costs writers
at most that long."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

log = logging.getLogger(__name__)

PAUSE_PROPERTY = "mlops.maintenance.writers-paused-until-ms"
MAX_PAUSE_SECONDS = 120.0
# How often a paused writer re-reads the table to see the pause given back early.
LOOK_SECONDS = 0.5


def commit_properties(table: Any, properties: dict[str, str], attempts: int = 30) -> None:
    """Set table properties in one commit. A properties-only commit has no snapshot requirement:
    it only loses when another commit lands in between (then it re-reads and tries again)."""
    from pyiceberg.exceptions import CommitFailedException
    from sqlalchemy.exc import OperationalError

    for attempt in range(1, attempts + 1):
        try:
            with table.transaction() as tx:
                tx.set_properties(properties)
            return
        except (CommitFailedException, OperationalError):
            if attempt == attempts:
                raise
            time.sleep(random.uniform(0.01, 0.1))
            table.refresh()


def pause_left(table: Any) -> float:
    """Seconds the table's writers are asked to hold their commits (0.0 when not paused)."""
    raw = table.properties.get(PAUSE_PROPERTY)
    try:
        left = int(raw) / 1000 - time.time()
    except (TypeError, ValueError):
        return 0.0
    return left if 0.0 < left <= MAX_PAUSE_SECONDS else 0.0


class NoPause:
    """Upkeep that pauses nobody (a table without concurrent writers)."""

    times_held = 0

    def hold(self) -> None:
        pass

    def release(self) -> None:
        pass


NO_PAUSE = NoPause()


class PauseForUpkeep:
    """Held only once upkeep lost a race (`hold`, which also extends a pause running low), and
    given back on `release` or when the `with` block ends, however it ends."""

    def __init__(self, table: Any, seconds: float = 60.0):
        if not 0 < seconds <= MAX_PAUSE_SECONDS:
            raise ValueError(f"a pause lasts 0-{MAX_PAUSE_SECONDS:.0f} s, not {seconds}")
        self._table = table
        self._seconds = seconds
        self._until = 0.0
        self.times_held = 0

    @property
    def held(self) -> bool:
        return self._until > time.time()

    def hold(self) -> None:
        """Pause the writers for `seconds` from now, unless more than half of that is left."""
        if self._until - time.time() > self._seconds / 2:
            return
        until = time.time() + self._seconds
        commit_properties(self._table, {PAUSE_PROPERTY: str(int(until * 1000))})
        self._until = until
        self.times_held += 1
        log.info("writers of %s paused for upkeep", ".".join(self._table.name()))

    def release(self) -> None:
        if self._until:
            commit_properties(self._table, {PAUSE_PROPERTY: "0"})
            self._until = 0.0

    def __enter__(self) -> PauseForUpkeep:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.release()
        except Exception:  # the pause runs out on its own; the upkeep's own error matters more
            log.warning("could not give back the writers' pause; it ends by itself", exc_info=True)
