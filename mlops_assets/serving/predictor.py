"""The online predictor: a `kserve.Model` per model config that looks up a row's online features in
Feast by the config's join keys (churn: the customer id), scores them with the MLflow model, applies
the label engine and answers in the Open Inference Protocol (V1 and V2) with the version that served
each row.

A deployment can serve a champion and a challenger side by side: a configured share of entities
(sticky: a hash of the config's `entity` key) goes to the challenger. Every prediction is handed to
the inference log, which commits to Iceberg in the background.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from kserve import Model
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from mlops_assets.model_config import ModelConfig
from mlops_assets.serving.compiled import CompiledModel
from mlops_assets.serving.deployment import DeploymentSpec, challenger_share
from mlops_assets.serving.label_engine import apply_rules, apply_rules_rows
from mlops_assets.serving.metrics import LATENCY, PREDICTIONS
from mlops_assets.serving.requests import OUTPUTS, Rejected, accepted, noun, parse_request
from mlops_assets.training.registry import Registry

if TYPE_CHECKING:
    from mlops_assets.features.online import OnlineFeatureReader
    from mlops_assets.serving.inference_log import InferenceLog

log = logging.getLogger(__name__)

CHAMPION_ARM, CHALLENGER_ARM = "champion", "challenger"
# Up to this many rows a request's labels are computed row by row (numpy's per-call cost would
# dominate); a larger request in numpy.
LABEL_ROWS_IN_PYTHON = 32


class NotReady(RuntimeError):
    """A deployment failed its readiness check (the message says which part)."""


@dataclass(frozen=True)
class Arm:
    """One served model version."""

    role: str
    version: str
    estimator: Any
    columns: list[str]
    compiled: CompiledModel | None = None
    threshold: float = 0.5  # its decision threshold (training/thresholds.py: decision_threshold)

    def predict(self, rows: list[dict[str, Any]]) -> np.ndarray:
        if self.compiled is not None:
            return self.compiled.predict_proba(self.compiled.encode(rows))
        return self.estimator.predict_proba(pd.DataFrame(rows, columns=self.columns))[:, 1]


# What loading a version imports (MLflow's model and client, skops, the estimators): ~3 s cold.
# A standby server imports them while it waits, so its first deployment does not.
LOAD_IMPORTS = ("mlflow.models", "mlflow.tracking", "skops.io", "sklearn.ensemble", "yaml")


def load_arm(
    registry: Registry, config: ModelConfig, role: str, version: str, served: list[str]
) -> Arm:
    """Load a registered version and check it can serve: its inputs are features the service has,
    and it scores its own logged input example to finite probabilities."""
    from mlflow.models import Model as MlflowModel

    from mlops_assets.training.registry import download_model, load_registered
    from mlops_assets.training.thresholds import decision_threshold

    uri = f"models:/{config.registered_model}/{version}"
    try:
        local = str(download_model(registry, config.registered_model, version))
        estimator = load_registered(Path(local))  # skops, trusted types only: never a pickle
    except Exception as err:  # registry, artifact or safety problem: keep the old deployment
        raise NotReady(f"{role} v{version}: cannot load {uri}: {err}") from None
    columns = [str(c) for c in getattr(estimator, "feature_names_in_", [])]
    missing = [c for c in columns if c not in served]
    if not columns or missing:
        raise NotReady(
            f"{role} v{version} needs features the service {config.feature_service!r} does not "
            f"serve: {missing or 'no feature names recorded'}"
        )
    example = MlflowModel.load(local).load_input_example(local)
    try:
        scores = estimator.predict_proba(pd.DataFrame(example)[columns])[:, 1]
    except Exception as err:
        raise NotReady(f"{role} v{version} fails on its own input example: {err}") from None
    if not np.all(np.isfinite(scores)) or np.any((scores < 0) | (scores > 1)):
        raise NotReady(f"{role} v{version} returns scores outside [0, 1] on its input example")
    try:
        threshold = decision_threshold(config, estimator)
    except ValueError as err:
        raise NotReady(f"{role} v{version}: {err}") from None
    # Trees compile to numpy; any other estimator (e.g. a logistic regression) scores in sklearn.
    arm = Arm(role, version, estimator, columns, CompiledModel.compile(estimator), threshold)
    if arm.compiled is not None:
        # The compiled scorer must agree with sklearn on the example before it may serve.
        rows = pd.DataFrame(example)[columns].to_dict(orient="records")
        if not np.allclose(arm.predict(rows), scores, rtol=1e-9, atol=1e-12):
            arm = Arm(role, version, estimator, columns, None, threshold)
    return arm


def entity_features(reader: OnlineFeatureReader, entity: str) -> list[str]:
    """The features of the service's views keyed by `entity` (fraud: the order's own views)."""
    return [
        name
        for view, names in reader.views
        if entity in {c.name for c in view.entity_columns}
        for name in names
    ]


class Predictor(Model):
    """Named after its model config; serves the deployment spec it was loaded with."""

    def __init__(
        self,
        config: ModelConfig,
        registry: Registry,
        spec: DeploymentSpec,
        reader: OnlineFeatureReader,
        inference_log: InferenceLog | None,
    ):
        super().__init__(config.name)
        self.config = config
        self.registry = registry
        self.spec = spec
        self.reader = reader
        self.inference_log = inference_log
        self.champion: Arm | None = None
        self.challenger: Arm | None = None
        self._canary_salt = ""
        self._rule_inputs = sorted(
            {c for o in config.label_engine.overrides for c in (*o.when, *o.min_values)}
        )
        self._join_keys = list(config.join_keys)
        self._unknown = "unknown_customer" if config.entity == "customer_id" else "unknown_entity"
        # With several join keys a row is known by its entity's own views (fraud: the order's),
        # whatever the other keys' views (the customer's) hold.
        self._own_features = (
            entity_features(reader, config.entity) if len(self._join_keys) > 1 else []
        )

    def load(self) -> bool:
        served = self.reader.feature_names
        self.champion = load_arm(
            self.registry, self.config, CHAMPION_ARM, self.spec.champion_version, served
        )
        if self.spec.challenger_version and self.spec.canary_percent > 0:
            self.challenger = load_arm(
                self.registry, self.config, CHALLENGER_ARM, self.spec.challenger_version, served
            )
            self._canary_salt = f"{self.config.name}:{self.spec.challenger_version}"
        self.ready = True
        return self.ready

    # -- V2 model metadata (GET /v2/models/<name>) -----------------------------------------------

    def get_input_types(self) -> list[dict]:
        return [
            *({"name": key, "datatype": "INT64", "shape": [-1]} for key in self._join_keys),
            {"name": "request_ts", "datatype": "BYTES", "shape": [-1]},
        ]

    def get_output_types(self) -> list[dict]:
        return [{"name": name, "datatype": dtype, "shape": [-1]} for name, dtype in OUTPUTS]

    async def explain(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        """V1 `:explain`: per-feature contributions per entity (serving/explain_api.py)."""
        from mlops_assets.serving.explain_api import explain_request

        return await explain_request(self, payload, headers)

    # -- scoring -----------------------------------------------------------------------------

    def _route(self, ids: list[int]) -> list[Arm]:
        """The arm per row, sticky per value of the config's `entity` key."""
        assert self.champion is not None
        if self.challenger is None:
            return [self.champion] * len(ids)
        share = self.spec.canary_percent
        return [
            self.challenger if challenger_share(c, self._canary_salt) < share else self.champion
            for c in ids
        ]

    def score(
        self, keys: dict[str, list[int]], times: list[dt.datetime | None], request_id: str
    ) -> dict[str, list[Any]]:
        """Columns: the join keys (churn: customer_id), score, prediction, risk_band, rule,
        model_version, arm."""
        started = time.perf_counter()
        now = dt.datetime.now(dt.UTC)
        ids = keys[self.config.entity]
        rows = self._features(keys, times, now)
        arms = self._route(ids)
        scores = np.empty(len(ids))
        for arm in {a.role: a for a in arms}.values():
            picked = [i for i, a in enumerate(arms) if a is arm]
            scores[picked] = arm.predict([rows[i] for i in picked])
        score_list = scores.tolist()
        thresholds = [a.threshold for a in arms]  # each arm cuts at its own
        labels = self._labels(score_list, rows, thresholds)
        versions = [a.version for a in arms]
        result = {
            **keys,
            "score": score_list,
            "prediction": labels["prediction"],
            "risk_band": labels["risk_band"],
            "rule": labels["rule"],
            "model_version": versions,
            "arm": [a.role for a in arms],
        }
        latency = time.perf_counter() - started
        for arm in arms:
            PREDICTIONS.labels(self.name, arm.version, arm.role).inc()
        LATENCY.labels(self.name, versions[0]).observe(latency)
        if self.inference_log is not None:
            self.inference_log.record(request_id, result, rows, latency, now, times)
        return result

    def _labels(
        self, scores: list[float], rows: list[dict[str, Any]], thresholds: list[float]
    ) -> dict[str, list]:
        """The label engine's columns: row by row for a request's few rows, in numpy for many."""
        rules = self.config.label_engine
        if len(rows) <= LABEL_ROWS_IN_PYTHON:
            return apply_rules_rows(scores, rows, rules, thresholds)
        columns = {name: [row.get(name) for row in rows] for name in self._rule_inputs}
        labels = apply_rules(np.array(scores), columns, rules, np.array(thresholds))
        return {name: values.tolist() for name, values in labels.items()}

    def _features(
        self, keys: dict[str, list[int]], times: list[dt.datetime | None], now: dt.datetime
    ) -> list[dict[str, Any]]:
        # A row's entity: its key (one join key, the fast path) or its keys in join_keys order.
        if len(keys) == 1:
            entities: list[Any] = next(iter(keys.values()))
        else:
            entities = list(zip(*(keys[k] for k in self._join_keys), strict=True))
        rows: list[dict[str, Any]] = [{} for _ in entities]
        as_of: list[dt.datetime | None] = [None] * len(entities)
        # One lookup per distinct request time (usually one: "now").
        for when in dict.fromkeys(t or now for t in times):
            picked = [i for i, t in enumerate(times) if (t or now) == when]
            found, stamps = self.reader.read_with_timestamps([entities[i] for i in picked], when)
            for i, row, stamp in zip(picked, found, stamps, strict=True):
                rows[i] = row
                as_of[i] = stamp
        what = noun(self.config.entity)
        own = self._own_features
        unknown = [
            e
            for e, stamp, row in zip(entities, as_of, rows, strict=True)
            if stamp is None or (own and all(row.get(n) is None for n in own))
        ]
        if unknown:
            raise Rejected(
                f"unknown {what}(s) with no online features: {unknown[:20]}", self._unknown
            )
        # A prediction as of request_ts must not use feature values from after it.
        ids = keys[self.config.entity]
        for c, t, stamp in zip(ids, times, as_of, strict=True):
            if t is not None and stamp is not None and t < stamp:
                raise Rejected(
                    f"request_ts {t.isoformat()} for {what} {c} is before its online features "
                    f"(event timestamp {stamp.isoformat()}): they would come from the future of "
                    "the request; send a later request_ts or none",
                    "request_before_features",
                )
        return rows

    async def predict(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None
    ) -> dict | InferResponse:
        keys, times = parse_request(payload, self.config.serving.max_instances, self._join_keys)
        accepted()  # from here on, an exception is the server's fault, not the client's
        request_id = (headers or {}).get("x-request-id") or (
            payload.id if isinstance(payload, InferRequest) and payload.id else uuid.uuid4().hex
        )
        result = self.score(keys, times, request_id)
        if isinstance(payload, InferRequest):
            n = len(times)
            wanted = {o.name for o in payload.request_outputs or []}
            return InferResponse(
                response_id=request_id,
                model_name=self.name,
                model_version=",".join(sorted(set(result["model_version"]))),
                infer_outputs=[
                    InferOutput(name, [n], dtype, result[name])
                    for name, dtype in OUTPUTS
                    if not wanted or name in wanted
                ],
            )
        keys = list(result)
        return {
            "id": request_id,
            "model_name": self.name,
            "predictions": [
                dict(zip(keys, values, strict=True))
                for values in zip(*result.values(), strict=True)
            ],
        }
