"""Parsing a prediction request (V1 `instances`, V2 `inputs`) into entity keys and request times,
with a `Rejected` (HTTP 400 and a reason for /metrics) for every mistake a client can make: keys
out of range or of the wrong type, timestamps that are not ISO 8601 or not representable, unknown
or missing fields, mismatched shapes, too many rows.

The keys are the model config's `join_keys` (churn: `customer_id`; a model keyed by an order and
its customer: `order_id` and `customer_id`), each an integer per instance (V1) or one INT64 tensor
per key (V2); every message names the key."""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

# Any JSON integer is accepted by the parsers; an id must fit Feast's INT64 entity key.
MAX_CUSTOMER_ID = 2**63 - 1
MAX_INT32 = 2**31 - 1
# request_ts bounds: what pandas (the on-demand feature) and the inference log can represent.
MIN_REQUEST_TS = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_REQUEST_TS = dt.datetime(2262, 4, 11, tzinfo=dt.UTC)
REQUEST_TS = "request_ts"
DEFAULT_KEYS = ("customer_id",)  # ModelConfig.entity's default
OUTPUTS = (
    ("score", "FP64"),
    ("prediction", "INT32"),
    ("risk_band", "BYTES"),
    ("rule", "BYTES"),
    ("model_version", "BYTES"),
    ("arm", "BYTES"),
)


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


def accepted() -> None:
    state = REQUEST.get()
    if state is not None:
        state.accepted = True


def noun(key: str) -> str:
    """What a key names, for messages: customer_id -> "customer"."""
    return key.removesuffix("_id").replace("_", " ")


def parse_request(
    payload: dict | InferRequest, max_instances: int, join_keys: Sequence[str] = DEFAULT_KEYS
) -> tuple[dict[str, list[int]], list[dt.datetime | None]]:
    """The entity keys (per join key, one integer per row) and request times of a V1 body or a
    V2 request; a mistake is Rejected."""
    if isinstance(payload, InferRequest):
        return _parse_v2(payload, max_instances, join_keys)
    if not isinstance(payload, dict):
        raise Rejected("the body must be a JSON object with 'instances' (V1) or 'inputs' (V2)")
    if "instances" not in payload:
        example = ", ".join(f'"{k}": <int>' for k in join_keys)
        raise Rejected(f"missing field 'instances': expected [{{{example}}}, ...]")
    unknown = sorted(str(k) for k in payload if k != "instances")
    if unknown:
        raise Rejected(f"unknown fields {short(unknown)}; a V1 body has only 'instances'")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise Rejected(f"'instances' must be a list, got {kind_of(instances)}")
    _check_count(len(instances), max_instances)
    allowed = {*join_keys, REQUEST_TS}
    keys: dict[str, list[int]] = {k: [] for k in join_keys}
    times = []
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            example = ", ".join(f'"{k}": 42' for k in join_keys)
            raise Rejected(
                f"instances[{i}] must be an object like {{{example}}}, got {kind_of(instance)}"
            )
        unknown = sorted(str(k) for k in instance if k not in allowed)
        if unknown:
            raise Rejected(f"instances[{i}] has unknown fields {short(unknown)}")
        for key, values in keys.items():
            if key not in instance:
                raise Rejected(f"instances[{i}] is missing {key!r}")
            values.append(_key_value(instance[key], f"instances[{i}].{key}", key))
        times.append(_timestamp(instance.get(REQUEST_TS), f"instances[{i}].request_ts"))
    return keys, times


def _parse_v2(
    request: InferRequest, max_instances: int, join_keys: Sequence[str]
) -> tuple[dict[str, list[int]], list[dt.datetime | None]]:
    by_name: dict[str, Any] = {}
    for tensor in request.inputs:
        if tensor.name in by_name:
            raise Rejected(f"input {tensor.name!r} is given twice")
        by_name[tensor.name] = tensor
    unknown = sorted(set(by_name) - {*join_keys, REQUEST_TS})
    if unknown:
        expected = " and ".join(repr(k) for k in join_keys)
        raise Rejected(
            f"unknown inputs {short(unknown)}; expected {expected} (INT64) and optionally "
            "'request_ts' (BYTES)"
        )
    known = {name for name, _ in OUTPUTS}
    for output in request.request_outputs or []:
        if output.name not in known:
            raise Rejected(
                f"unknown output {short(output.name)}; this model answers {sorted(known)}"
            )
    keys: dict[str, list[int]] = {}
    for key in join_keys:
        tensor = by_name.get(key)
        if tensor is None:
            raise Rejected(f"missing input {key!r} (INT64, shape [n])")
        if tensor.datatype not in ("INT64", "INT32"):
            raise Rejected(f"input {key!r} must be INT64, got {short(tensor.datatype)}")
        data = _tensor_data(tensor, key)
        _check_count(len(data), max_instances)
        first = next(iter(keys.values()), None)
        if first is not None and len(first) != len(data):
            raise Rejected(
                f"input {key!r} has {len(data)} values for {len(first)} rows of "
                f"{join_keys[0]!r}; give one {key} per row"
            )
        top = MAX_CUSTOMER_ID if tensor.datatype == "INT64" else MAX_INT32
        keys[key] = [_key_value(v, f"{key}[{i}]", key, top) for i, v in enumerate(data)]
    n = len(keys[join_keys[0]])
    times: list[dt.datetime | None] = [None] * n
    if REQUEST_TS in by_name:
        raw = by_name[REQUEST_TS]
        if raw.datatype != "BYTES":
            raise Rejected(
                f"input 'request_ts' must be BYTES (ISO 8601 strings), got {short(raw.datatype)}"
            )
        stamps = _tensor_data(raw, REQUEST_TS)
        if len(stamps) != n:
            what = noun(join_keys[0])
            raise Rejected(
                f"input 'request_ts' has {len(stamps)} values for {n} {what}s; give one per {what}"
            )
        times = [_timestamp(v, f"request_ts[{i}]") for i, v in enumerate(stamps)]
    return keys, times


def _check_count(n: int, max_instances: int) -> None:
    if n == 0:
        raise Rejected("empty batch: send at least one row")
    if n > max_instances:
        raise Rejected(f"{n} rows in one request; the limit is {max_instances}")


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


def _key_value(value: Any, where: str, key: str, top: int = MAX_CUSTOMER_ID) -> int:
    # bool is an int in Python; a float like 3.0 is a datatype mistake for an id.
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer() and not 0 <= value <= top:
            # orjson reads integers beyond 64 bits as floats
            raise Rejected(f"{where} is out of range: {noun(key)} ids are integers in [0, {top}]")
        raise Rejected(f"{where} must be an integer {noun(key)} id, got {kind_of(value)}")
    if not 0 <= value <= top:
        raise Rejected(
            f"{where} is out of range: {noun(key)} ids are integers in [0, {top}], "
            f"got {short(value)}"
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
