"""The two doors to explanations (mlops_assets/serving/explain.py):

- KServe's V1 explain route, `POST /v1/models/<model>:explain`, with the body of `:predict`
  (`{"instances": [{"customer_id": 1}]}`; a model with several join keys takes them all). Per
  entity: its keys, score, the model's log-odds, the base value, the contributions per feature
  (largest absolute first, each with the feature's value), the features as looked up at request
  time, model_version and arm. A client's mistake is the same 4xx as on `:predict`; the number of
  entities is capped by the config's `explain.max_instances`.
- The `top_reasons` column of the daily batch predictions: the `explain.top_reasons_k` largest
  contributions per row, as JSON, computed over the whole day at once (0 = off: the column is null).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops_assets.serving.explain import Explanation, NoExplainer, cached_explainer, explainer_for
from mlops_assets.serving.requests import accepted, parse_request

if TYPE_CHECKING:
    import pandas as pd

    from mlops_assets.model_config import ModelConfig

log = logging.getLogger(__name__)


async def explain_request(
    predictor: Any, payload: Any, headers: dict[str, str] | None
) -> dict[str, Any]:
    """The answer of `:explain` for `payload` (what `Predictor.explain` returns; `predictor`: the
    serving/predictor.py Predictor, not imported here: it imports this module)."""
    config = predictor.config
    keys, times = parse_request(payload, config.explain.max_instances, config.join_keys)
    accepted()  # from here on, an exception is the server's fault, not the client's
    request_id = (headers or {}).get("x-request-id") or uuid.uuid4().hex
    rows = predictor._features(keys, times, dt.datetime.now(dt.UTC))
    arms = predictor._route(keys[config.entity])
    answers: list[dict[str, Any]] = [{} for _ in rows]
    for arm in {a.role: a for a in arms}.values():
        picked = [i for i, a in enumerate(arms) if a is arm]
        for i, answer in zip(
            picked, await _explain_arm(arm, [rows[i] for i in picked]), strict=True
        ):
            answers[i] = {**{k: keys[k][i] for k in config.join_keys}, **answer}
    return {"id": request_id, "model_name": predictor.name, "explanations": answers}


async def _explain_arm(arm: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    explainer = cached_explainer(arm.estimator)
    if explainer is None:  # the version's first explanation: built off the event loop
        explainer = await asyncio.to_thread(explainer_for, arm.estimator, arm.compiled)
    explanation = explainer.explain_rows(rows)
    scores = arm.predict(rows)
    log_odds = explanation.log_odds()
    answers = []
    for r, row in enumerate(rows):
        values = {name: _plain(row.get(name)) for name in explanation.features}
        answers.append(
            {
                "score": float(scores[r]),
                "log_odds": float(log_odds[r]),
                "base_value": explanation.base_value,
                "method": explanation.method,
                "contributions": [
                    {"feature": name, "contribution": value, "value": values[name]}
                    for name, value in explanation.ranked(r)
                ],
                "features": values,
                "model_version": arm.version,
                "arm": arm.role,
            }
        )
    return answers


def _plain(value: Any) -> Any:
    """A feature value as JSON: numbers, strings, booleans, null (NaN too), ISO timestamps."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def top_reasons(
    config: ModelConfig,
    models: dict[str, Any],
    features: pd.DataFrame,
    versions: np.ndarray,
) -> list[str | None] | None:
    """Per row, its top `explain.top_reasons_k` reasons as JSON, explained by the version that
    scored it (`models`: version -> estimator); None when the config turns them off."""
    from mlops_assets.training.estimators import feature_frame

    k = config.explain.top_reasons_k
    if k == 0:
        return None
    names = [c for c in features.columns if c not in config.join_keys]
    X = feature_frame(features, names)
    reasons: list[str | None] = [None] * len(features)
    for version, model in models.items():
        picked = np.flatnonzero(versions == version)
        if not len(picked):
            continue
        try:
            explainer = explainer_for(model)
        except NoExplainer as err:  # the predictions still land, without reasons
            log.warning("no top_reasons for %s v%s: %s", config.name, version, err)
            continue
        explanation = explainer.explain_frame(X.iloc[picked])
        for i, text in zip(picked, top_reasons_json(explanation, k), strict=True):
            reasons[i] = text
    return reasons


def top_reasons_json(explanation: Explanation, k: int) -> list[str]:
    """Per row, its k largest contributions as JSON [{"feature", "contribution"}, ...]."""
    return [
        json.dumps(
            [{"feature": f, "contribution": round(v, 6)} for f, v in explanation.ranked(r, k)]
        )
        for r in range(len(explanation.contributions))
    ]
