"""The online predictor: a `kserve.Model` that looks up a customer's online features in Feast, scores
them with the MLflow model, applies the label engine and answers in the Open Inference Protocol (V1
and V2) with the version that served each row.

A deployment can serve a champion and a challenger side by side: a configured share of customers
(sticky: a hash of the customer id) goes to the challenger. Every prediction is handed to the
inference log, which commits to Iceberg in the background.
"""

from __future__ import annotations

import contextvars
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
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from prometheus_client import Counter, Histogram

from mlops_assets.model_config import ModelConfig
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
# The reasons a request is rejected (label `reason` of ERRORS; the README lists status and cause).
REASONS = (
    "invalid_json",  # 400: the body is not JSON (syntax, NaN/Infinity, bad UTF-8, empty)
    "invalid_input",  # 400: JSON, but not a valid request (fields, types, shapes, ranges, limits)
    "unknown_customer",  # 400: a customer with no online features
    "request_before_features",  # 400: request_ts earlier than the customer's feature values
    "unsupported_media_type",  # 415: a content type other than application/json
    "payload_too_large",  # 413: a body over serving.max_body_bytes
    "unknown_model",  # 404: a model this server does not serve
    "unknown_route",  # 404/405: no such path, or a method the path does not take
    "internal_error",  # 500: a server fault (not the client's mistake), logged with a traceback
)
LATENCY = Histogram(
    "mlops_predict_latency_seconds",
    "Feature lookup + scoring + label engine, per request",
    ["model", "model_version"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.5),
)

CHAMPION_ARM, CHALLENGER_ARM = "champion", "challenger"


# Any JSON integer is accepted by the parsers; an id must fit Feast's INT64 entity key.
MAX_CUSTOMER_ID = 2**63 - 1
MAX_INT32 = 2**31 - 1
# request_ts bounds: what pandas (the on-demand feature) and the inference log can represent.
MIN_REQUEST_TS = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_REQUEST_TS = dt.datetime(2262, 4, 11, tzinfo=dt.UTC)
INPUT_NAMES = ("customer_id", "request_ts")
OUTPUTS = (
    ("score", "FP64"),
    ("prediction", "INT32"),
    ("risk_band", "BYTES"),
    ("rule", "BYTES"),
    ("model_version", "BYTES"),
    ("arm", "BYTES"),
)


class NotReady(RuntimeError):
    """A deployment failed its readiness check (the message says which part)."""


class Rejected(InvalidInput):
    """A client's mistake: HTTP 400 (unless `status` says otherwise), counted under `code`."""

    def __init__(self, message: str, code: str = "invalid_input", status: int = 400):
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass
class RequestState:
    """Per request, set by the server's guard: `accepted` turns true once the predictor has
    parsed and validated the request; an exception before that was caused by the client's input,
    one after it is a server fault."""

    accepted: bool = True


REQUEST: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar(
    "mlops_request", default=None
)


def _accepted() -> None:
    state = REQUEST.get()
    if state is not None:
        state.accepted = True


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
    from mlflow.models import Model as MlflowModel

    from mlops_assets.training.registry import download_model, load_registered

    uri = f"models:/{config.registered_model}/{version}"
    try:
        local = str(download_model(settings, config.registered_model, version))
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

    # -- V2 model metadata (GET /v2/models/<name>) -----------------------------------------------

    def get_input_types(self) -> list[dict]:
        return [
            {"name": "customer_id", "datatype": "INT64", "shape": [-1]},
            {"name": "request_ts", "datatype": "BYTES", "shape": [-1]},
        ]

    def get_output_types(self) -> list[dict]:
        return [{"name": name, "datatype": dtype, "shape": [-1]} for name, dtype in OUTPUTS]

    async def explain(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        raise Rejected(f"{self.name} has no explainer; use /v1/models/{self.name}:predict")

    # -- request parsing ---------------------------------------------------------------------

    def _parse(self, payload: dict | InferRequest) -> tuple[list[int], list[dt.datetime | None]]:
        if isinstance(payload, InferRequest):
            return self._parse_v2(payload)
        if not isinstance(payload, dict):
            raise Rejected("the body must be a JSON object with 'instances' (V1) or 'inputs' (V2)")
        if "instances" not in payload:
            raise Rejected("missing field 'instances': expected [{\"customer_id\": <int>}, ...]")
        unknown = sorted(str(k) for k in payload if k != "instances")
        if unknown:
            raise Rejected(f"unknown fields {short(unknown)}; a V1 body has only 'instances'")
        instances = payload["instances"]
        if not isinstance(instances, list):
            raise Rejected(f"'instances' must be a list, got {kind_of(instances)}")
        self._check_count(len(instances))
        ids, times = [], []
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise Rejected(
                    f'instances[{i}] must be an object like {{"customer_id": 42}}, '
                    f"got {kind_of(instance)}"
                )
            unknown = sorted(str(k) for k in instance if k not in INPUT_NAMES)
            if unknown:
                raise Rejected(f"instances[{i}] has unknown fields {short(unknown)}")
            if "customer_id" not in instance:
                raise Rejected(f"instances[{i}] is missing 'customer_id'")
            ids.append(_customer_id(instance["customer_id"], f"instances[{i}].customer_id"))
            times.append(_timestamp(instance.get("request_ts"), f"instances[{i}].request_ts"))
        return ids, times

    def _parse_v2(self, request: InferRequest) -> tuple[list[int], list[dt.datetime | None]]:
        by_name: dict[str, Any] = {}
        for tensor in request.inputs:
            if tensor.name in by_name:
                raise Rejected(f"input {tensor.name!r} is given twice")
            by_name[tensor.name] = tensor
        unknown = sorted(set(by_name) - set(INPUT_NAMES))
        if unknown:
            raise Rejected(
                f"unknown inputs {short(unknown)}; expected 'customer_id' (INT64) and optionally "
                "'request_ts' (BYTES)"
            )
        known = {name for name, _ in OUTPUTS}
        for output in request.request_outputs or []:
            if output.name not in known:
                raise Rejected(
                    f"unknown output {short(output.name)}; this model answers {sorted(known)}"
                )
        tensor = by_name.get("customer_id")
        if tensor is None:
            raise Rejected("missing input 'customer_id' (INT64, shape [n])")
        if tensor.datatype not in ("INT64", "INT32"):
            raise Rejected(f"input 'customer_id' must be INT64, got {short(tensor.datatype)}")
        data = _tensor_data(tensor, "customer_id")
        self._check_count(len(data))
        top = MAX_CUSTOMER_ID if tensor.datatype == "INT64" else MAX_INT32
        ids = [_customer_id(v, f"customer_id[{i}]", top) for i, v in enumerate(data)]
        times: list[dt.datetime | None] = [None] * len(ids)
        if "request_ts" in by_name:
            raw = by_name["request_ts"]
            if raw.datatype != "BYTES":
                raise Rejected(
                    f"input 'request_ts' must be BYTES (ISO 8601 strings), got {short(raw.datatype)}"
                )
            stamps = _tensor_data(raw, "request_ts")
            if len(stamps) != len(ids):
                raise Rejected(
                    f"input 'request_ts' has {len(stamps)} values for {len(ids)} customers; "
                    "give one per customer"
                )
            times = [_timestamp(v, f"request_ts[{i}]") for i, v in enumerate(stamps)]
        return ids, times

    def _check_count(self, n: int) -> None:
        if n == 0:
            raise Rejected("empty batch: name at least one customer")
        if n > self.config.serving.max_instances:
            raise Rejected(
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
            self.inference_log.record(request_id, result, rows, latency, now, times)
        return result

    def _features(
        self, ids: list[int], times: list[dt.datetime | None], now: dt.datetime
    ) -> list[dict[str, Any]]:
        # One lookup per distinct request time (usually one: "now").
        rows: list[dict[str, Any]] = [{} for _ in ids]
        as_of: list[dt.datetime | None] = [None] * len(ids)
        for when in dict.fromkeys(t or now for t in times):
            picked = [i for i, t in enumerate(times) if (t or now) == when]
            found, stamps = self.reader.read_with_timestamps([ids[i] for i in picked], when)
            for i, row, stamp in zip(picked, found, stamps, strict=True):
                rows[i] = row
                as_of[i] = stamp
        unknown = [c for c, stamp in zip(ids, as_of, strict=True) if stamp is None]
        if unknown:
            raise Rejected(
                f"unknown customer(s) with no online features: {unknown[:20]}", "unknown_customer"
            )
        # A prediction as of request_ts must not use feature values from after it.
        for c, t, stamp in zip(ids, times, as_of, strict=True):
            if t is not None and stamp is not None and t < stamp:
                raise Rejected(
                    f"request_ts {t.isoformat()} for customer {c} is before its online features "
                    f"(event timestamp {stamp.isoformat()}): they would come from the future of "
                    "the request; send a later request_ts or none",
                    "request_before_features",
                )
        return rows

    async def predict(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None
    ) -> dict | InferResponse:
        ids, times = self._parse(payload)
        _accepted()  # from here on, an exception is the server's fault, not the client's
        request_id = (headers or {}).get("x-request-id") or (
            payload.id if isinstance(payload, InferRequest) and payload.id else uuid.uuid4().hex
        )
        result = self.score(ids, times, request_id)
        if isinstance(payload, InferRequest):
            n = len(ids)
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


def short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def kind_of(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"the number {short(value)}"
    return names.get(type(value), type(value).__name__)


def _tensor_data(tensor: Any, name: str) -> list:
    """A V2 tensor's values, flat, with a shape [n] that matches them."""
    data = tensor.data
    if not isinstance(data, list):
        raise Rejected(f"input {name!r}: 'data' must be a list of values, shape [n]")
    shape = tensor.shape
    if len(shape) != 1 or shape[0] != len(data):
        raise Rejected(
            f"input {name!r} has shape {short(list(shape))} but {len(data)} values; "
            "expected shape [n] with n values"
        )
    return data


def _customer_id(value: Any, where: str, top: int = MAX_CUSTOMER_ID) -> int:
    # bool is an int in Python; a float like 3.0 is a datatype mistake for an id.
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer() and not 0 <= value <= top:
            # orjson reads integers beyond 64 bits as floats
            raise Rejected(f"{where} is out of range: customer ids are integers in [0, {top}]")
        raise Rejected(f"{where} must be an integer customer id, got {kind_of(value)}")
    if not 0 <= value <= top:
        raise Rejected(
            f"{where} is out of range: customer ids are integers in [0, {top}], got {short(value)}"
        )
    return value


def _timestamp(value: Any, where: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Rejected(f"{where} must be an ISO 8601 string, got {kind_of(value)}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(f"{where} is not an ISO 8601 timestamp: {short(value)}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        inside = MIN_REQUEST_TS <= parsed < MAX_REQUEST_TS
    except (OverflowError, ValueError):  # an offset that pushes it past datetime's range
        inside = False
    if not inside:
        raise Rejected(
            f"{where} must be between {MIN_REQUEST_TS.date()} and {MAX_REQUEST_TS.date()}, "
            f"got {short(value)}"
        )
    return parsed
