"""The materialization window rule both write paths share (Feast's own and the bulk loader), kept
apart from them so that neither imports the other."""

from __future__ import annotations

import datetime as dt


def check_window(
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime | None = None,
    *,
    allow_empty: bool = False,
) -> tuple[dt.datetime, dt.datetime]:
    """The window [start, end) as aware UTC times (naive ones are UTC, as Feast takes them), or
    ValueError for a window Feast would record wrongly as a materialization interval: an end in
    the future (the incremental watermark would pass now and later data be skipped, feast #4222),
    or a start after the end (an inverted interval that writes nothing yet moves the watermark)."""
    from feast.utils import make_tzaware

    start, end = make_tzaware(start), make_tzaware(end)
    now = make_tzaware(now) if now is not None else dt.datetime.now(dt.UTC)
    if end > now:
        raise ValueError(f"refusing to materialize up to {end.isoformat()}, which is in the future")
    if start > end:
        raise ValueError(
            f"inverted materialization window: {start.isoformat()} is after {end.isoformat()}"
        )
    if start == end and not allow_empty:
        raise ValueError(f"empty materialization window {start.isoformat()} .. {end.isoformat()}")
    return start, end
