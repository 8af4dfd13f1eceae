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


def fairness_per_group(table: pd.DataFrame, day) -> bytes | None:
    """One panel per segment attribute: each group's rates on `day` side by side (groups too
    small to judge have no rates and are left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlops_assets.monitoring.fairness import METRICS

    rows = table[
        (table["monitor"] == "fairness")
        & (table["day"] == day)
        & table["metric"].isin(METRICS)
        & table["feature"].str.contains("=", na=False)
    ].dropna(subset=["value"])
    if rows.empty:
        return None
    split = rows["feature"].str.split("=", n=1)
    rows = rows.assign(attribute=split.str[0], group=split.str[1])
    attributes = sorted(rows["attribute"].unique())
    heights = [rows.loc[rows["attribute"] == a, "group"].nunique() for a in attributes]
    fig, axes = plt.subplots(
        len(attributes), 1, figsize=(7, 0.9 * sum(heights) + 1.2 * len(attributes)), squeeze=False
    )
    for ax, attribute in zip(axes[:, 0], attributes, strict=True):
        wide = rows[rows["attribute"] == attribute].pivot(
            index="group", columns="metric", values="value"
        )
        wide = wide[[m for m in METRICS if m in wide.columns]].sort_index()
        wide.plot.barh(ax=ax, width=0.8, legend=False)
        ax.set_xlim(0, 1)
        ax.set_ylabel("")
        gaps = table[
            (table["monitor"] == "fairness")
            & (table["day"] == day)
            & (table["feature"] == attribute)
            & table["breached"]
        ]
        over = ", ".join(sorted(gaps["metric"])) or "none"
        ax.set_title(f"{attribute} on {day} (gaps over their limit: {over})", fontsize=9)
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
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
