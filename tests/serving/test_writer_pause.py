"""The pause upkeep asks of the inference log's writers (lakehouse/lease.py), on a real pyiceberg
SQL catalog with the real writer process: the property's meaning, the writer holding its rows
while paused and committing them once the pause is given back or runs out, and the upkeep giving
the pause back however it ends."""

import datetime as dt
import itertools
import threading
import time

import pytest

from mlops_assets.lakehouse.lease import (
    MAX_PAUSE_SECONDS,
    PAUSE_PROPERTY,
    PauseForUpkeep,
    commit_properties,
    pause_left,
)
from mlops_assets.lakehouse.tables import INFERENCE_LOG
from mlops_assets.serving.inference_log import InferenceLog

AT = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def _record(writer: InferenceLog, i: int) -> None:
    result = {"score": [0.4], "prediction": [0], "risk_band": ["low"], "rule": ["score"]}
    result |= {"model_version": ["3"], "arm": ["champion"], "customer_id": [i]}
    writer.record(f"req-{i}", result, [{"x": i}], 0.001, AT + dt.timedelta(seconds=i))


def _appends(table) -> int:
    table.refresh()
    return sum(s.summary.operation.value == "append" for s in table.snapshots())


def _wait_for(condition, seconds: float = 10.0) -> float:
    """Seconds until `condition()` held; fails the test after `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "timed out"
        time.sleep(0.02)
    return time.monotonic() - started


def _request_ids(table) -> list[str]:
    table.refresh()
    return sorted(table.scan(selected_fields=("request_id",)).to_pandas()["request_id"])


def test_pause_left_reads_the_property_and_ignores_nonsense(resources):
    table = INFERENCE_LOG.open(resources.lakehouse.catalog(), "churn")
    assert pause_left(table) == 0.0  # never set
    now_ms = int(time.time() * 1000)
    for value, expected in [
        (str(now_ms + 30_000), pytest.approx(30, abs=2)),
        ("0", 0.0),  # given back
        (str(now_ms - 5_000), 0.0),  # ran out
        (str(now_ms + int(MAX_PAUSE_SECONDS * 1000) + 60_000), 0.0),  # too far ahead: a bad clock
        ("soon", 0.0),
    ]:
        commit_properties(table, {PAUSE_PROPERTY: value})
        assert pause_left(table) == expected, value
    with pytest.raises(ValueError, match="a pause lasts"):
        PauseForUpkeep(table, seconds=MAX_PAUSE_SECONDS + 1)


def test_upkeep_pause_is_given_back_however_the_upkeep_ends(resources):
    table = INFERENCE_LOG.open(resources.lakehouse.catalog(), "churn")
    pause = PauseForUpkeep(table, seconds=30)
    with pytest.raises(RuntimeError, match="upkeep failed"), pause:
        pause.hold()
        assert pause.held and 25 < pause_left(table) <= 30
        location = table.metadata_location
        pause.hold()  # more than half left: no second commit
        assert table.metadata_location == location and pause.times_held == 1
        raise RuntimeError("upkeep failed")
    table.refresh()
    assert table.properties[PAUSE_PROPERTY] == "0" and pause_left(table) == 0.0
    assert not pause.held


def test_the_writer_holds_its_rows_while_paused_and_commits_them_when_given_back(
    resources, tmp_path
):
    """The writer learns of the pause from its next commit's metadata, then holds every row (it
    would commit every 100 ms otherwise) until the pause is given back, and loses none."""
    catalog = resources.lakehouse.catalog()
    table = INFERENCE_LOG.open(catalog, "churn")
    writer = InferenceLog(dict(catalog.properties), tmp_path / "spool", "churn", 1000, 0.1)
    try:
        _record(writer, 0)
        _wait_for(lambda: _appends(table) == 1)
        pause = PauseForUpkeep(table, seconds=60)
        pause.hold()
        _record(writer, 1)  # this commit's metadata carries the pause
        _wait_for(lambda: _appends(table) == 2)
        for i in range(2, 40):
            _record(writer, i)
            time.sleep(0.04)
        assert _appends(table) == 2  # 1.5 s of rows held, not ~15 commits
        pause.release()
        waited = _wait_for(lambda: _appends(table) == 3)
        assert waited < 2.0  # the writer looks again every 0.5 s
        assert _request_ids(table) == sorted(f"req-{i}" for i in range(40))
    finally:
        assert writer.close() == 0
    assert not (tmp_path / "spool").exists()


def test_a_pause_nobody_gives_back_runs_out_and_a_stopping_writer_does_not_wait(
    resources, tmp_path
):
    catalog = resources.lakehouse.catalog()
    table = INFERENCE_LOG.open(catalog, "churn")
    writer = InferenceLog(dict(catalog.properties), tmp_path / "spool", "churn", 1000, 0.1)
    try:
        _record(writer, 0)
        _wait_for(lambda: _appends(table) == 1)  # the writer is up
        PauseForUpkeep(table, seconds=1.5).hold()  # an upkeep that crashed holding it
        _record(writer, 1)
        _wait_for(lambda: _appends(table) == 2)  # learns of the pause
        started = time.monotonic()
        _record(writer, 2)
        _wait_for(lambda: _appends(table) == 3)
        assert 0.3 < time.monotonic() - started < 3.0  # held until the pause ran out

        PauseForUpkeep(table, seconds=60).hold()
        _record(writer, 3)
        _wait_for(lambda: _appends(table) == 4)  # learns of the pause
        _record(writer, 4)
        time.sleep(0.3)
        assert _appends(table) == 4
    finally:
        started = time.monotonic()
        assert writer.close() == 0
    assert time.monotonic() - started < 10  # the last batch went in despite the pause
    assert _request_ids(table) == [f"req-{i}" for i in range(5)]


def test_a_compaction_that_loses_a_race_pauses_the_writer_and_wins_the_next(resources, tmp_path):
    """pyiceberg's own commit retries are off here, so every race the compaction loses to the
    writer (which commits every 100 ms) reaches the upkeep's loop: it then pauses the writer, wins
    within two more attempts, and gives the pause back; no row is lost or doubled."""
    from mlops_assets.lakehouse.maintenance import compact, ensure_properties

    catalog = resources.lakehouse.catalog()
    table = INFERENCE_LOG.open(catalog, "churn")
    ensure_properties(table)
    commit_properties(table, {"commit.retry.num-retries": "0"})
    writer = InferenceLog(dict(catalog.properties), tmp_path / "spool", "churn", 1000, 0.1)
    sent, stop = [], threading.Event()

    def serve() -> None:
        for i in itertools.takewhile(lambda _: not stop.is_set(), itertools.count()):
            _record(writer, i)
            sent.append(f"req-{i}")
            time.sleep(0.003)

    server = threading.Thread(target=serve)
    server.start()
    raced: list[tuple[int, int]] = []  # (attempts, pauses) of the compactions that lost a race
    deadline = time.monotonic() + 120
    try:
        while len(raced) < 2 and time.monotonic() < deadline:
            time.sleep(0.3)  # a few files to compact
            with PauseForUpkeep(table, seconds=30) as pause:
                result = compact(table, target_file_bytes=64 << 20, min_files=2, pause=pause)
            assert result.rows_before == result.rows_after
            if result.attempts > 1:
                raced.append((result.attempts, pause.times_held))
            table.refresh()
            assert pause_left(table) == 0.0  # given back
    finally:
        stop.set()
        server.join()
        assert writer.close() == 0
    assert len(raced) == 2, "no compaction lost a race to the writer in 120 s"
    assert all(pauses >= 1 and attempts <= 3 for attempts, pauses in raced), raced
    assert _request_ids(table) == sorted(sent)  # none lost, none doubled
    assert not (tmp_path / "spool").exists()
