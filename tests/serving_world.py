"""A served shop for the model-server tests: a small generated world, materialized online features,
a champion and a challenger in MLflow, and the local KServe model server on a free port."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlops_assets.datasets.training_set import build_training_set, load_labels
from mlops_assets.features.store import materialize_window
from mlops_assets.model_config import model_configs
from mlops_assets.serving.deployment import stop_server
from mlops_assets.serving.rollout import deploy
from mlops_assets.training.promotion import set_alias
from mlops_assets.training.registry import CHALLENGER, CHAMPION
from tests.conftest import build_shop, free_port, register_quick_model, scratch_world

BASE = model_configs()["churn"]
DAYS = 150
# After the world's last weekly feature snapshot (2025-05-28), inside its last landed day.
REQUEST_TS = "2025-05-30T12:00:00+00:00"


@contextmanager
def served_shop(
    root: Path, canary_percent: int = 30, customers: int = 3000
) -> Iterator[dict[str, Any]]:
    """Build the world under `root`, deploy champion + challenger, stop the server at the end."""
    with scratch_world(root, customers) as settings:
        store = build_shop(settings, days=DAYS)
        start = dt.datetime.combine(settings.world().start_date, dt.time(), tzinfo=dt.UTC)
        materialize_window(store, start, start + dt.timedelta(days=DAYS))
        dataset = root / "dataset"
        build_training_set(store, "churn_v1", load_labels(settings), dataset)
        champion = register_quick_model(settings, dataset)
        challenger = register_quick_model(settings, dataset, kind="baseline")
        set_alias(settings, "churn", CHAMPION, champion, actor="test", reason="fixture")
        set_alias(settings, "churn", CHALLENGER, challenger, actor="test", reason="fixture")
        serving = BASE.serving.model_copy(
            update={"port": free_port(), "canary_percent": canary_percent}
        )
        config = BASE.model_copy(update={"serving": serving})
        deploy(settings, config, actor="test", reason="fixture")
        try:
            yield {
                "settings": settings,
                "store": store,
                "config": config,
                "dataset": dataset,
                "champion": champion,
                "challenger": challenger,
                "port": serving.port,
                "url": f"http://127.0.0.1:{serving.port}",
            }
        finally:
            stop_server(settings, "churn")


def customers(shop: dict[str, Any], n: int) -> list[int]:
    """Customers with online features (every customer with a gold snapshot), in id order."""
    import duckdb

    path = shop["settings"].gold_dir / "customer_features.parquet"
    with duckdb.connect() as con:
        ids = con.execute(
            "select distinct customer_id from read_parquet(?) order by 1 limit ?", [str(path), n]
        ).fetchall()
    return [int(i) for (i,) in ids]


def error_counts(metrics_text: str, model: str | None = None) -> dict[str, float]:
    """`mlops_prediction_errors_total` by reason (summed over models, or for one model label)."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "mlops_prediction_errors":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            if model is not None and sample.labels["model"] != model:
                continue
            reason = sample.labels["reason"]
            counts[reason] = counts.get(reason, 0.0) + sample.value
    return counts
