"""A served shop for the model-server tests: a small generated world, materialized online features,
a champion and a challenger in MLflow, and the local KServe model server on a free port."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlops_assets.datasets.training_set import Labels, build_training_set, load_labels
from mlops_assets.model_config import model_configs
from mlops_assets.serving.rollout import deploy
from mlops_assets.testing import (
    build_shop,
    free_port,
    materialize_all,
    register_quick_model,
    scratch_world,
)
from mlops_assets.training.decisions import set_alias
from mlops_assets.training.registry import CHALLENGER, CHAMPION

BASE = model_configs()["churn"]
DAYS = 150
# After the world's last weekly feature snapshot (2025-05-28), inside its last landed day.
REQUEST_TS = "2025-05-30T12:00:00+00:00"
V1 = f"/v1/models/{BASE.name}:predict"
V2 = f"/v2/models/{BASE.name}/infer"


@contextmanager
def served_shop(
    root: Path, canary_percent: int = 30, customers: int = 3000
) -> Iterator[dict[str, Any]]:
    """Build the world under `root`, deploy champion + challenger, stop the server at the end."""
    with scratch_world(root, customers) as (settings, res):
        store = build_shop(settings, days=DAYS)
        materialize_all(store, settings, DAYS)
        dataset = root / "dataset"
        labels = Labels.of(BASE)
        build_training_set(store, labels, load_labels(res.warehouse, labels), dataset)
        registry = res.model_registry.registry()
        champion = register_quick_model(registry, BASE, dataset)
        challenger = register_quick_model(registry, BASE, dataset, kind="baseline")
        set_alias(
            registry, BASE.registered_model, CHAMPION, champion, actor="test", reason="fixture"
        )
        set_alias(
            registry, BASE.registered_model, CHALLENGER, challenger, actor="test", reason="fixture"
        )
        serving = BASE.serving.model_copy(
            update={"port": free_port(), "canary_percent": canary_percent}
        )
        config = BASE.model_copy(update={"serving": serving})
        deploy(registry, res.deployer, config, actor="test", reason="fixture")
        try:
            yield {
                "settings": settings,
                "resources": res,
                "registry": registry,
                "deployer": res.deployer,
                "store": store,
                "config": config,
                "dataset": dataset,
                "champion": champion,
                "challenger": challenger,
                "port": serving.port,
                "url": f"http://127.0.0.1:{serving.port}",
            }
        finally:
            res.deployer.stop(BASE.name)


def predict(shop: dict[str, Any], ids: list[int]) -> dict:
    """A V1 prediction for `ids` as of REQUEST_TS, which must succeed."""
    body = {"instances": [{"customer_id": c, "request_ts": REQUEST_TS} for c in ids]}
    status, answer = call(f"{shop['url']}{V1}", body)
    assert status == 200, answer
    return answer


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


def call(url: str, body: bytes | dict | None = None, headers: dict | None = None):
    """(status, answer) of a GET, or of a POST of `body` (a dict is sent as JSON); JSON answers
    parsed."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST" if data is not None else "GET",
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read().decode()
            return response.status, (json.loads(raw) if raw.startswith(("{", "[")) else raw)
    except urllib.error.HTTPError as err:
        raw = err.read().decode()
        return err.code, (json.loads(raw) if raw.startswith("{") else raw)
