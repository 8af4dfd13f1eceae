"""What a monitor found for one day, and the Iceberg table all monitors write
(`monitoring.<model>_daily`, see mlops_assets/lakehouse/tables.py): one row per number with its
threshold and whether it was breached, plus one `status` row per monitor and day (what the
sensors read). A run over many days replaces those days in one commit."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlops_assets.lakehouse.tables import MONITORING
from mlops_assets.model_config import ModelConfig

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog


class MonitoringError(ValueError):
    pass


@dataclass
class MonitorResult:
    monitor: str
    day: dt.date
    status: str  # ok | breached | pending | no_data
    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def breached(self) -> bool:
        return self.status == "breached"

    def row(
        self,
        metric: str,
        value: float | None,
        threshold: float | None = None,
        *,
        breached: bool = False,
        feature: str | None = None,
        version: str | None = None,
        detail: str = "",
    ) -> None:
        self.rows.append(
            {
                "metric": metric,
                "feature": feature,
                "model_version": version,
                "value": None if value is None or not np.isfinite(value) else float(value),
                "threshold": threshold,
                "breached": bool(breached),
                "detail": detail,
            }
        )


def write_results(catalog: Catalog, config: ModelConfig, results: list[MonitorResult]) -> None:
    """Replace the days' rows of these monitors in one commit (a run over many days is one
    snapshot, and readers never see half of it)."""
    from pyiceberg.expressions import And, In

    if not results:
        return
    table = MONITORING.open(catalog, config.name)
    now = dt.datetime.now(dt.UTC)
    frames = []
    for result in results:
        # One status row per monitor and day: what the sensors read (1 = the check failed).
        status = {
            "metric": "status",
            "feature": None,
            "model_version": None,
            "value": 1.0 if result.breached else 0.0,
            "threshold": None,
            "breached": result.breached,
            "detail": result.status,
        }
        frame = pd.DataFrame([status, *result.rows])
        frames.append(frame.assign(day=result.day, monitor=result.monitor, computed_at=now))
    frame = pd.concat(frames, ignore_index=True)
    arrow = pa.Table.from_pandas(
        frame[MONITORING.schema.names], schema=MONITORING.schema, preserve_index=False
    )
    days = sorted({r.day for r in results})
    monitors = sorted({r.monitor for r in results})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Delete operation did not match any records")
        table.overwrite(arrow, overwrite_filter=And(In("day", days), In("monitor", monitors)))


def write_result(catalog: Catalog, config: ModelConfig, result: MonitorResult) -> None:
    write_results(catalog, config, [result])


def read_table(catalog: Catalog, config: ModelConfig) -> pd.DataFrame:
    return MONITORING.open(catalog, config.name).scan().to_pandas()


def summary_metadata(result: MonitorResult) -> dict[str, Any]:
    return {
        "status": result.status,
        **{
            k: (json.dumps(v) if isinstance(v, list | dict) else v)
            for k, v in result.summary.items()
        },
    }
