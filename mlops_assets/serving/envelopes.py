"""The shape of a request body, checked before KServe sees it: JSON that parses (no NaN or
Infinity, no number a double cannot hold), the V1 envelope (`instances`) and the V2 one (`inputs`
with name, shape, datatype and data; optional `outputs`, `id`, `parameters`). A mistake is a
`Rejection` with the HTTP status, a reason (the /metrics label) and a sentence for the client."""

from __future__ import annotations

import json
from typing import Any

_V1_FIELDS = frozenset({"instances"})
_V2_FIELDS = frozenset({"id", "parameters", "inputs", "outputs"})
_V2_INPUT_FIELDS = frozenset({"name", "shape", "datatype", "parameters", "data"})
_V2_OUTPUT_FIELDS = frozenset({"name", "parameters"})
_V2_REQUIRED_INPUT_FIELDS = ("name", "shape", "datatype", "data")


class Rejection(Exception):
    """A request the guard answers itself (status, reason label, message)."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def parse_json(body: bytes) -> Any:
    """Strict JSON (RFC 8259): no NaN/Infinity, UTF-8 only, numbers that fit a double."""
    import orjson

    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise Rejection(400, "invalid_json", _why_not_json(body, err)) from None


class _Constant(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _Constant(name)


def _why_not_json(body: bytes, err: Exception) -> str:
    """A readable reason, on the error path only (never on the hot path)."""
    if not body.strip():
        return "the body is empty: send a JSON object"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"the body is not valid UTF-8 (byte {bad.start}); JSON must be UTF-8"
    try:
        json.loads(text, parse_constant=_reject_constant)
    except _Constant as constant:
        return (
            f"{constant} is not valid JSON (JSON has no NaN or Infinity): send a number, or "
            "null where a field is optional"
        )
    except (ValueError, RecursionError):
        pass
    return f"the body is not valid JSON: {err}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    from mlops_assets.serving.requests import short

    return short(value)


def _kind(value: Any) -> str:
    from mlops_assets.serving.requests import kind_of

    return kind_of(value)


def _check_fields(obj: dict, allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in obj if k not in allowed)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise Rejection(
            400,
            "invalid_input",
            f"{where} has unknown fields [{shown}]; allowed: {sorted(allowed)}",
        )


def _check_parameters(value: Any, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise Rejection(400, "invalid_input", f"{where} must be an object, got {_kind(value)}")
    for key, item in value.items():
        if not isinstance(item, str | int | float):  # bool is an int
            raise Rejection(
                400,
                "invalid_input",
                f"{where}[{key[:40]!r}] must be a string, number or boolean, got {_kind(item)}",
            )


def _require_object(payload: Any, example: str) -> None:
    if not isinstance(payload, dict):
        raise Rejection(
            400,
            "invalid_input",
            f"the body must be a JSON object like {example}, got {_kind(payload)}",
        )


def check_v1_envelope(payload: Any) -> None:
    """A V1 body is an object with exactly `instances` (the predictor checks the instances)."""
    _require_object(payload, '{"instances": [...]}')
    _check_fields(payload, _V1_FIELDS, "the body")


def check_v2_envelope(payload: Any) -> None:
    """The Open Inference Protocol request envelope with strict JSON types (KServe's pydantic
    models would coerce "3" to 3, or answer 422); the tensors' contents are the predictor's."""
    _require_object(payload, '{"inputs": [...]}')
    _check_fields(payload, _V2_FIELDS, "the body")
    if payload.get("id") is not None and not isinstance(payload["id"], str):
        raise Rejection(400, "invalid_input", f"'id' must be a string, got {_kind(payload['id'])}")
    _check_parameters(payload.get("parameters"), "'parameters'")
    if "inputs" not in payload:
        raise Rejection(
            400,
            "invalid_input",
            'missing field \'inputs\': expected [{"name": "customer_id", "datatype": "INT64", '
            '"shape": [n], "data": [...]}]',
        )
    inputs = payload["inputs"]
    if not isinstance(inputs, list):
        raise Rejection(400, "invalid_input", f"'inputs' must be a list, got {_kind(inputs)}")
    for i, tensor in enumerate(inputs):
        _check_input_tensor(tensor, f"inputs[{i}]")
    outputs = payload.get("outputs")
    if outputs is None:
        return
    if not isinstance(outputs, list):
        raise Rejection(400, "invalid_input", f"'outputs' must be a list, got {_kind(outputs)}")
    for i, output in enumerate(outputs):
        where = f"outputs[{i}]"
        if not isinstance(output, dict):
            raise Rejection(400, "invalid_input", f"{where} must be an object, got {_kind(output)}")
        _check_fields(output, _V2_OUTPUT_FIELDS, where)
        if not isinstance(output.get("name"), str):
            raise Rejection(
                400,
                "invalid_input",
                f"{where}.name must be a string, got {_kind(output.get('name'))}",
            )
        _check_parameters(output.get("parameters"), f"{where}.parameters")


def _check_input_tensor(tensor: Any, where: str) -> None:
    if not isinstance(tensor, dict):
        raise Rejection(400, "invalid_input", f"{where} must be an object, got {_kind(tensor)}")
    _check_fields(tensor, _V2_INPUT_FIELDS, where)
    for field in _V2_REQUIRED_INPUT_FIELDS:
        if tensor.get(field) is None:
            state = "null" if field in tensor else "missing"
            raise Rejection(400, "invalid_input", f"{where}.{field} is {state}")
    for field in ("name", "datatype"):
        if not isinstance(tensor[field], str):
            raise Rejection(
                400,
                "invalid_input",
                f"{where}.{field} must be a string, got {_kind(tensor[field])}",
            )
    shape = tensor["shape"]
    if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
        raise Rejection(
            400,
            "invalid_input",
            f"{where}.shape must be a list of integers like [n], got {_short(shape)}",
        )
    if not isinstance(tensor["data"], list):
        raise Rejection(
            400,
            "invalid_input",
            f"{where}.data must be a list of values, got {_kind(tensor['data'])}",
        )
    _check_parameters(tensor.get("parameters"), f"{where}.parameters")
