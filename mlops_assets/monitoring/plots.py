"""Plots a person can open from the Dagster UI: PNGs embedded in Markdown metadata, also written to
data/monitoring/plots/ (and the same numbers are in the Iceberg monitoring table for Grafana)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pandas as pd


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def metric_over_time(table: pd.DataFrame, monitor: str) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlops_assets.monitoring.registry import MONITORS

    metric = MONITORS[monitor].headline
    rows = table[
        (table["monitor"] == monitor) & (table["metric"] == metric) & table["feature"].isna()
    ]
    if monitor == "performance":
        rows = rows[rows["model_version"].isna()]  # NULL: all versions together
    rows = rows.dropna(subset=["value"]).sort_values("day")
    if rows.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.plot(pd.to_datetime(rows["day"]), rows["value"], marker=".", label=metric)
    limit = rows["threshold"].dropna()
    if len(limit):
        ax.axhline(float(limit.iloc[-1]), color="tab:red", linestyle="--", label="threshold")
    bad = rows[rows["breached"]]
    ax.scatter(pd.to_datetime(bad["day"]), bad["value"], color="tab:red", zorder=3)
    ax.set_title(f"{monitor}: {metric} by monitoring day")
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    png = _png(fig)
    plt.close(fig)
    return png


def drift_per_feature(table: pd.DataFrame, day) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table[
        (table["monitor"] == "feature_drift") & (table["metric"] == "psi") & (table["day"] == day)
    ].dropna(subset=["value"])
    if rows.empty:
        return None
    rows = rows.sort_values("value")
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(rows) + 1))
    colors = ["tab:red" if b else "tab:blue" for b in rows["breached"]]
    ax.barh(rows["feature"], rows["value"], color=colors)
    limit = rows["threshold"].dropna()
    if len(limit):
        ax.axvline(float(limit.iloc[0]), color="tab:red", linestyle="--")
    ax.set_title(f"PSI per feature on {day} (red: drifted)")
    png = _png(fig)
    plt.close(fig)
    return png


def markdown(png: bytes, title: str) -> str:
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


def save(png: bytes, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    path.write_bytes(png)
    return path
