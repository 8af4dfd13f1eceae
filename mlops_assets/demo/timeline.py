"""The demo's record: the timeline of what happened (written to the Iceberg table
`monitoring.timeline` for `mlops sql`), the timings the benchmark reads, and the numbers the
story's lines quote (degradation windows, when the degradation became visible)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from mlops_assets.model_config import ModelConfig

# Generated state the demo rebuilds each time (the landing data and warehouse follow the world and
# are kept; the registry, tables, deployments and the Dagster instance start empty so the
# sensors' run keys and cursors describe this run).
RESET = (
    "dagster_home",
    "dagster_home_services",
    "mlflow",
    "iceberg",
    "serving",
    "monitoring",
    "kfp",
)


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
        model: str = "",
    ) -> None:
        self.events.append(
            {
                "occurred_at": dt.datetime.now(dt.UTC),
                "data_day": day,
                "event": event,
                "detail": detail,
                "run_id": run_id,
                "model_version": version,
                "model": model,  # '' for the world's events
            }
        )


def reset(data_dir: Path) -> None:
    for name in RESET:
        shutil.rmtree(data_dir / name, ignore_errors=True)


def write_timeline(catalog: Catalog, timeline: Timeline) -> str:
    """Replace monitoring.timeline with this run's events (query it with `mlops sql`)."""
    import pyarrow as pa

    from mlops_assets.lakehouse.tables import TIMELINE

    table = TIMELINE.open(catalog)
    table.overwrite(pa.Table.from_pylist(timeline.events, schema=TIMELINE.schema))
    return TIMELINE.name()


def degradation_summary(catalog: Catalog, config: ModelConfig) -> tuple[dt.date | None, dict]:
    from mlops_assets.monitoring.decisions import degradation_windows
    from mlops_assets.monitoring.results import read_table

    windows = degradation_windows(read_table(catalog, config))
    if not windows:
        return None, {}
    return windows[0].start, {w.key: w.days for w in windows}


def describe_run(instance: Any, run_id: str) -> dict[str, str]:
    run = instance.get_run_by_id(run_id)
    return {k: v for k, v in (run.tags if run else {}).items() if k.startswith("mlops/")}


def conclusive_at(catalog: Catalog, config: ModelConfig, window: str) -> float:
    """When the degradation became visible: the commit time of the failed checks that made the
    window `consecutive_days` long (epoch seconds)."""
    from mlops_assets.monitoring.registry import RETRAIN_ON
    from mlops_assets.monitoring.results import read_table

    start = dt.date.fromisoformat(window.split("..")[0])
    conclusive = start + dt.timedelta(days=config.monitoring.consecutive_days - 1)
    table = read_table(catalog, config)
    rows = table[
        (table["metric"] == "status")
        & table["breached"]
        & table["monitor"].isin(RETRAIN_ON)
        & (table["day"] >= start)
        & (table["day"] <= conclusive)
    ]
    return float(rows.groupby("day")["computed_at"].min().max().timestamp())


def save_report(data_dir: Path, report: dict[str, Any]) -> None:
    """The last demo's timings (benchmarks/bench_demo.py reads them)."""
    path = data_dir / "logs" / "demo_report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
