"""The closed loop of `mlops demo`, step by step, on the local Dagster instance.

History is generated with covariate and concept drift switched on partway. The first model is
trained on the labels known before the drift, deployed, and scores the following weeks; monitoring
runs over them; the Dagster daemon's retraining sensor notices the degradation and launches the
retraining job (fresh dataset, KFP training, gate, canary deployment); the latest labelled weeks are
replayed through the canary split (a real canary waits for its 30-day labels; the replay is the
time-compressed stand-in); the daemon's canary sensor promotes or rolls back. The timeline lands in
the Iceberg table monitoring.timeline.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_assets.settings import PROJECT_ROOT, Settings

# Generated state the demo rebuilds each time (the landing data and warehouse are idempotent and
# kept; the registry, tables, deployments and the Dagster instance start empty so the sensors'
# run keys and cursors describe this run).
RESET = ("dagster_home", "mlflow", "iceberg", "serving", "monitoring", "kfp")


@dataclass
class Plan:
    """The demo's calendar, from the settings (defaults: 240 days from 2025-01-01, drift on day 165)."""

    first_day: dt.date
    last_day: dt.date
    drift_day: dt.date
    window_days: int = 30

    @property
    def labels_end(self) -> dt.date:
        """The last prediction day whose actuals are known by the end of the history."""
        return self.last_day - dt.timedelta(days=self.window_days)

    @property
    def monitor_days(self) -> tuple[dt.date, dt.date]:
        """The last weeks whose performance is measurable (actuals due) and drift is visible."""
        return self.labels_end - dt.timedelta(days=17), self.labels_end

    @property
    def score_days(self) -> tuple[dt.date, dt.date]:
        """Monitoring day D evaluates the predictions of D - 31 (their actuals are due by D)."""
        first = self.monitor_days[0] - dt.timedelta(days=self.window_days + 1)
        return first, self.labels_end

    @property
    def canary_days(self) -> tuple[dt.date, dt.date]:
        return self.labels_end - dt.timedelta(days=13), self.labels_end


@dataclass
class Timeline:
    events: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        event: str,
        detail: str,
        run_id: str = "",
        version: str = "",
        day: dt.date | None = None,
    ) -> None:
        self.events.append(
            {
                "at": dt.datetime.now(dt.UTC),
                "data_day": day,
                "event": event,
                "detail": detail,
                "run_id": run_id,
                "model_version": version,
            }
        )


def reset(settings: Settings) -> None:
    for name in RESET:
        shutil.rmtree(settings.data_dir / name, ignore_errors=True)


def start_daemon(settings: Settings, home: Path) -> subprocess.Popen:
    """The Dagster daemon (what `dagster dev` runs beside the UI): sensors and schedules."""
    log = (settings.data_dir / "dagster_daemon.log").open("ab")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-daemon"),
            "run",
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_daemon(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def wait_for_run(
    instance: Any,
    tag: tuple[str, str],
    job: str | None,
    since: float,
    timeout: float,
    progress: Callable[[str], None],
) -> Any:
    """The first run with `tag` created after `since` (epoch s), once it has finished."""
    import dagster as dg

    deadline = time.monotonic() + timeout
    seen = None
    finished = {
        dg.DagsterRunStatus.SUCCESS,
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.CANCELED,
    }
    while time.monotonic() < deadline:
        records = instance.get_run_records(filters=dg.RunsFilter(tags={tag[0]: tag[1]}), limit=5)
        records = [
            r
            for r in records
            if r.create_timestamp.timestamp() >= since
            and (job is None or r.dagster_run.job_name == job)
        ]
        if records:
            record = records[-1]
            if seen is None:
                seen = record.dagster_run.run_id
                progress(f"the daemon launched {record.dagster_run.job_name} run {seen}")
            if record.dagster_run.status in finished:
                return record
        time.sleep(1)
    raise TimeoutError(f"no finished run tagged {tag} within {timeout:.0f}s")


def degradation_summary(settings: Settings, config: Any) -> tuple[dt.date | None, dict]:
    from mlops_assets.monitoring.decisions import degradation_windows
    from mlops_assets.monitoring.monitors import read_table

    table = read_table(settings, config)
    windows = degradation_windows(table)
    if not windows:
        return None, {}
    return windows[0].start, {w.key: w.days for w in windows}


def write_timeline(settings: Settings, timeline: Timeline) -> str:
    """Replace monitoring.timeline with this run's events (query it with `mlops sql`). An event's
    "at" is stored as `occurred_at` (`at` is a keyword SQL users would have to quote); a table
    written with the old column name gets it renamed."""
    import pyarrow as pa
    from pyiceberg.exceptions import NoSuchTableError

    from mlops_assets.lakehouse.catalog import catalog, ensure_namespace

    schema = pa.schema(
        [
            pa.field("occurred_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("data_day", pa.date32(), nullable=True),
            pa.field("event", pa.string(), nullable=False),
            pa.field("detail", pa.string(), nullable=False),
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
        ]
    )
    cat = catalog(settings)
    ensure_namespace(cat, "monitoring")
    try:
        table = cat.load_table("monitoring.timeline")
    except NoSuchTableError:
        table = cat.create_table("monitoring.timeline", schema=schema)
    if "at" in table.schema().column_names and "occurred_at" not in table.schema().column_names:
        with table.update_schema() as update:
            update.rename_column("at", "occurred_at")
    if set(table.schema().column_names) != set(schema.names):
        with table.update_schema() as update:  # the whole table is replaced below
            update.union_by_name(schema)
    rows = [
        {("occurred_at" if key == "at" else key): value for key, value in event.items()}
        for event in timeline.events
    ]
    table.overwrite(pa.Table.from_pylist(rows, schema=schema))
    return "monitoring.timeline"


def describe_run(instance: Any, run_id: str) -> dict[str, str]:
    run = instance.get_run_by_id(run_id)
    return {k: v for k, v in (run.tags if run else {}).items() if k.startswith("mlops/")}


def conclusive_at(settings: Settings, config: Any, window: str) -> float:
    """When the degradation became visible: the commit time of the failed check that made the
    window `consecutive_days` long (epoch seconds)."""
    from mlops_assets.monitoring.monitors import RETRAIN_ON, read_table

    start = dt.date.fromisoformat(window.split("..")[0])
    conclusive = start + dt.timedelta(days=config.monitoring.consecutive_days - 1)
    table = read_table(settings, config)
    rows = table[
        (table["metric"] == "status")
        & table["breached"]
        & table["monitor"].isin(RETRAIN_ON)
        & (table["day"] >= start)
        & (table["day"] <= conclusive)
    ]
    return float(rows.groupby("day")["computed_at"].min().max().timestamp())


def save_report(settings: Settings, report: dict[str, Any]) -> None:
    """The last demo's timings (benchmarks/bench_demo.py reads them)."""
    path = settings.data_dir / "logs" / "demo_report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
