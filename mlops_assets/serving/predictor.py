"""The online predictor: a `kserve.Model` that looks up a customer's online features in Feast, scores
them with the MLflow model, applies the label engine and answers in the Open Inference Protocol (V1
and V2) with the version that served each row.

A deployment can serve a champion and a challenger side by side: a configured share of customers
(sticky: a hash of the customer id) goes to the challenger. Every prediction is handed to the
inference log, which commits to Iceberg in the background.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from prometheus_client import Counter, Histogram

from mlops_assets.models.config import ModelConfig
from mlops_assets.serving.compiled import CompiledChurnModel
from mlops_assets.serving.deployment import DeploymentSpec, challenger_share
from mlops_assets.serving.label_engine import apply_rules
from mlops_assets.settings import Settings

if TYPE_CHECKING:
    from mlops_assets.features.online import OnlineFeatureReader
    from mlops_assets.serving.inference_log import InferenceLog

log = logging.getLogger(__name__)

PREDICTIONS = Counter("mlops_predictions", "Rows scored online", ["model", "model_version", "arm"])
ERRORS = Counter("mlops_prediction_errors", "Rejected or failed requests", ["model", "reason"])
LATENCY = Histogram(
    "mlops_predict_latency_seconds",
    "Feature lookup + scoring + label engine, per request",
    ["model", "model_version"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.5),
)

CHAMPION_ARM, CHALLENGER_ARM = "champion", "challenger"


class NotReady(RuntimeError):
    """A deployment failed its readiness check (the message says which part)."""


@dataclass(frozen=True)
class Arm:
    """One served model version."""

    role: str
    version: str
    estimator: Any
    columns: list[str]
    compiled: CompiledChurnModel | None = None

    def predict(self, rows: list[dict[str, Any]]) -> np.ndarray:
        if self.compiled is not None:
            return self.compiled.predict_proba(self.compiled.encode(rows))
        return self.estimator.predict_proba(pd.DataFrame(rows, columns=self.columns))[:, 1]


def load_arm(
    settings: Settings, config: ModelConfig, role: str, version: str, served: list[str]
) -> Arm:
    """Load a registered version and check it can serve: its inputs are features the service has,
    and it scores its own logged input example to finite probabilities."""
    import mlflow
    from mlflow.models import Model as MlflowModel

    from mlops_assets.models.registry import client

    client(settings)
    uri = f"models:/{config.registered_model}/{version}"
    try:
        local = mlflow.artifacts.download_artifacts(uri)
        estimator = mlflow.sklearn.load_model(local)
    except Exception as err:  # registry or artifact problem: report, keep the old deployment
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
    arm = Arm(role, version, estimator, columns, CompiledChurnModel.compile(estimator))
    if arm.compiled is not None:
        # The compiled scorer must agree with sklearn on the example before it may serve.
        rows = pd.DataFrame(example)[columns].to_dict(orient="records")
        if not np.allclose(arm.predict(rows), scores, rtol=1e-9, atol=1e-12):
            arm = Arm(role, version, estimator, columns, None)
    return arm


class ChurnPredictor(Model):
    """Named after the model config (`churn`); serves the deployment spec it was loaded with."""

    def __init__(
        self,
        config: ModelConfig,
        settings: Settings,
        spec: DeploymentSpec,
        reader: OnlineFeatureReader,
        inference_log: InferenceLog | None,
    ):
        super().__init__(config.name)
        self.config = config
        self.settings = settings
        self.spec = spec
        self.reader = reader
        self.inference_log = inference_log
        self.champion: Arm | None = None
        self.challenger: Arm | None = None
        self._canary_salt = ""
        self._rule_inputs = sorted(
            {c for o in config.label_engine.overrides for c in (*o.when, *o.min_values)}
        )

    def load(self) -> bool:
        served = self.reader.feature_names
        self.champion = load_arm(
            self.settings, self.config, CHAMPION_ARM, self.spec.champion_version, served
        )
        if self.spec.challenger_version and self.spec.canary_percent > 0:
            self.challenger = load_arm(
                self.settings, self.config, CHALLENGER_ARM, self.spec.challenger_version, served
            )
            self._canary_salt = f"{self.config.name}:{self.spec.challenger_version}"
        self.ready = True
        return self.ready

    # -- request parsing ---------------------------------------------------------------------

    def _parse(self, payload: dict | InferRequest) -> tuple[list[int], list[dt.datetime | None]]:
        if isinstance(payload, InferRequest):
            return self._parse_v2(payload)
        if not isinstance(payload, dict):
            raise InvalidInput(
                "the body must be a JSON object with 'instances' (V1) or 'inputs' (V2)"
            )
        if "instances" not in payload:
            raise InvalidInput(
                "missing field 'instances': expected [{\"customer_id\": <int>}, ...]"
            )
        instances = payload["instances"]
        if not isinstance(instances, list):
            raise InvalidInput("'instances' must be a list")
        self._check_count(len(instances))
        ids, times = [], []
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise InvalidInput(f'instances[{i}] must be an object like {{"customer_id": 42}}')
            unknown = sorted(set(instance) - {"customer_id", "request_ts"})
            if unknown:
                raise InvalidInput(f"instances[{i}] has unknown fields {unknown}")
            if "customer_id" not in instance:
                raise InvalidInput(f"instances[{i}] is missing 'customer_id'")
            ids.append(_customer_id(instance["customer_id"], f"instances[{i}].customer_id"))
            times.append(_timestamp(instance.get("request_ts"), f"instances[{i}].request_ts"))
        return ids, times

    def _parse_v2(self, request: InferRequest) -> tuple[list[int], list[dt.datetime | None]]:
        by_name = {i.name: i for i in request.inputs}
        unknown = sorted(set(by_name) - {"customer_id", "request_ts"})
        if unknown:
            raise InvalidInput(f"unknown inputs {unknown}; expected 'customer_id' (INT64)")
        tensor = by_name.get("customer_id")
        if tensor is None:
            raise InvalidInput("missing input 'customer_id' (INT64, shape [n])")
        if tensor.datatype not in ("INT64", "INT32"):
            raise InvalidInput(f"input 'customer_id' must be INT64, got {tensor.datatype}")
        data = tensor.data if isinstance(tensor.data, list) else list(tensor.data)
        if len(tensor.shape) != 1 or tensor.shape[0] != len(data):
            raise InvalidInput(
                f"input 'customer_id' has shape {tensor.shape} but {len(data)} values; "
                "expected shape [n]"
            )
        self._check_count(len(data))
        ids = [_customer_id(v, f"customer_id[{i}]") for i, v in enumerate(data)]
        times: list[dt.datetime | None] = [None] * len(ids)
        if "request_ts" in by_name:
            raw = by_name["request_ts"]
            if raw.datatype != "BYTES" or len(raw.data) != len(ids):
                raise InvalidInput("input 'request_ts' must be BYTES (ISO 8601), one per customer")
            times = [_timestamp(v, f"request_ts[{i}]") for i, v in enumerate(raw.data)]
        return ids, times

    def _check_count(self, n: int) -> None:
        if n == 0:
            raise InvalidInput("empty batch: name at least one customer")
        if n > self.config.serving.max_instances:
            raise InvalidInput(
                f"{n} customers in one request; the limit is {self.config.serving.max_instances}"
            )

    # -- scoring -----------------------------------------------------------------------------

    def _route(self, ids: list[int]) -> list[Arm]:
        assert self.champion is not None
        if self.challenger is None:
            return [self.champion] * len(ids)
        share = self.spec.canary_percent
        return [
            self.challenger if challenger_share(c, self._canary_salt) < share else self.champion
            for c in ids
        ]

    def score(
        self, ids: list[int], times: list[dt.datetime | None], request_id: str
    ) -> dict[str, list[Any]]:
        """Columns customer_id, score, prediction, risk_band, rule, model_version, arm."""
        started = time.perf_counter()
        now = dt.datetime.now(dt.UTC)
        rows = self._features(ids, times, now)
        arms = self._route(ids)
        scores = np.empty(len(ids))
        for arm in {a.role: a for a in arms}.values():
            picked = [i for i, a in enumerate(arms) if a is arm]
            scores[picked] = arm.predict([rows[i] for i in picked])
        columns = {name: [row.get(name) for row in rows] for name in self._rule_inputs}
        labels = apply_rules(
            scores, columns, self.config.label_engine, self.config.decision_threshold
        )
        versions = [a.version for a in arms]
        result = {
            "customer_id": ids,
            "score": scores.tolist(),
            "prediction": labels["prediction"].tolist(),
            "risk_band": labels["risk_band"].tolist(),
            "rule": labels["rule"].tolist(),
            "model_version": versions,
            "arm": [a.role for a in arms],
        }
        latency = time.perf_counter() - started
        for arm in arms:
            PREDICTIONS.labels(self.name, arm.version, arm.role).inc()
        LATENCY.labels(self.name, versions[0]).observe(latency)
        if self.inference_log is not None:
            self.inference_log.record(request_id, result, rows, latency, now)
        return result

    def _features(
        self, ids: list[int], times: list[dt.datetime | None], now: dt.datetime
    ) -> list[dict[str, Any]]:
        # One lookup per distinct request time (usually one: "now").
        rows: list[dict[str, Any]] = [{} for _ in ids]
        for when in dict.fromkeys(t or now for t in times):
            picked = [i for i, t in enumerate(times) if (t or now) == when]
            for i, row in zip(
                picked, self.reader.read([ids[i] for i in picked], when), strict=True
            ):
                rows[i] = row
        stored = [n for _, names in self.reader.views for n in names]
        unknown = [
            c for c, row in zip(ids, rows, strict=True) if all(row.get(n) is None for n in stored)
        ]
        if unknown:
            ERRORS.labels(self.name, "unknown_customer").inc()
            raise InvalidInput(f"unknown customer(s) with no online features: {unknown[:20]}")
        return rows

    async def predict(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None
    ) -> dict | InferResponse:
        try:
            ids, times = self._parse(payload)
        except InvalidInput:
            ERRORS.labels(self.name, "invalid_input").inc()
            raise
        request_id = (headers or {}).get("x-request-id") or (
            payload.id if isinstance(payload, InferRequest) and payload.id else uuid.uuid4().hex
        )
        result = self.score(ids, times, request_id)
        if isinstance(payload, InferRequest):
            n = len(ids)
            return InferResponse(
                response_id=request_id,
                model_name=self.name,
                model_version=",".join(sorted(set(result["model_version"]))),
                infer_outputs=[
                    InferOutput("score", [n], "FP64", result["score"]),
                    InferOutput("prediction", [n], "INT32", result["prediction"]),
                    InferOutput("risk_band", [n], "BYTES", result["risk_band"]),
                    InferOutput("rule", [n], "BYTES", result["rule"]),
                    InferOutput("model_version", [n], "BYTES", result["model_version"]),
                    InferOutput("arm", [n], "BYTES", result["arm"]),
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


def _customer_id(value: Any, where: str) -> int:
    # bool is an int in Python; a float like 3.0 is a datatype mistake for an id.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{where} must be an integer customer id, got {value!r}")
    if value < 0:
        raise InvalidInput(f"{where} must be a non-negative customer id, got {value}")
    return value


def _timestamp(value: Any, where: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{where} must be an ISO 8601 string, got {value!r}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{where} is not an ISO 8601 timestamp: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
