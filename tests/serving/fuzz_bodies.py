"""Request bodies for the model-server fuzz test (hypothesis strategies): random JSON with the
tokens plain json cannot write (NaN, Infinity, overflowing numbers), random V1/V2 bodies, and
valid V1/V2 bodies with (mostly) one mutation."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.serving.serving_world import BASE, REQUEST_TS

OUTPUT_NAMES = ["score", "prediction", "risk_band", "rule", "model_version", "arm"]


# -- JSON with tokens plain json cannot write ---------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """Written verbatim into the body: NaN, Infinity, numbers that overflow a double."""

    token: str


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return value.token
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


BAD_NUMBERS = st.sampled_from(
    [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"), Raw("-1e999"), Raw("-NaN")]
)
BIG_INTS = st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70, -(2**63) - 1, 10**30])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    BIG_INTS,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    BAD_NUMBERS,
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

TIMESTAMPS_BAD = st.sampled_from(
    [
        "May",
        "",
        "2025-13-01",
        "0001-01-01",
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:59:59-12:00",
        "0001-01-01T00:00:00+14:00",
        "2025-05-30T12:00:00+25:00",
        "2025-01-02T00:00:00+00:00",  # before every customer's features
        "2262-04-11T00:00:00Z",
        "2025-05-30T12:00:00.123456789",
    ]
)
TIMESTAMPS_OK = st.datetimes(
    min_value=dt.datetime(2025, 5, 29), max_value=dt.datetime(2262, 1, 1)
).map(lambda t: t.replace(tzinfo=dt.UTC).isoformat())
# Before the world's last snapshot: before the features of most customers.
TIMESTAMPS_EARLY = st.datetimes(
    min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2025, 5, 27)
).map(lambda t: t.replace(tzinfo=dt.UTC).isoformat())
TIMESTAMPS = st.one_of(
    st.none(), TIMESTAMPS_OK, TIMESTAMPS_EARLY, TIMESTAMPS_BAD, st.text(max_size=30), JSON
)


def ids(known: list[int]) -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(known),
        st.integers(min_value=0, max_value=2**63 - 1),
        st.integers(min_value=-(2**70), max_value=2**70),
        BIG_INTS,
        JSON,
    )


# -- bodies ---------------------------------------------------------------------------------------


def v1_body(known: list[int]) -> st.SearchStrategy:
    instance = st.one_of(
        st.fixed_dictionaries(
            {"customer_id": ids(known)},
            optional={"request_ts": TIMESTAMPS, "age": JSON},
        ),
        st.fixed_dictionaries({}, optional={"request_ts": TIMESTAMPS}),
        JSON,
    )
    instances = st.one_of(st.lists(instance, max_size=4), JSON)
    return st.one_of(
        st.fixed_dictionaries({"instances": instances}, optional={"id": JSON, "inputs": JSON}),
        JSON,
    )


@st.composite
def v2_tensor(draw: st.DrawFn, known: list[int]) -> dict:
    name = draw(
        st.one_of(
            st.sampled_from(["customer_id", "customer_id", "request_ts", "customer", "ID"]),
            JSON,
        )
    )
    if name == "request_ts":
        data = draw(st.one_of(st.lists(TIMESTAMPS, max_size=4), JSON))
        datatype = draw(st.one_of(st.just("BYTES"), st.sampled_from(["INT64", "bytes"]), JSON))
    else:
        data = draw(st.one_of(st.lists(ids(known), max_size=4), JSON))
        datatype = draw(
            st.one_of(
                st.just("INT64"),
                st.sampled_from(["INT32", "int64", "FP32", "FP16", "BYTES", "BOOL", "UINT64"]),
                JSON,
            )
        )
    n = len(data) if isinstance(data, list) else 1
    shape = draw(
        st.one_of(
            st.just([n]),
            st.lists(st.integers(min_value=-3, max_value=2**64), max_size=3),
            st.sampled_from([[n, 1], [1, n], [], [-1], ["1"], [True], [float(n)]]),
            JSON,
        )
    )
    tensor = {"name": name, "shape": shape, "datatype": datatype, "data": data}
    # Drop or null a field now and then, or add one.
    missing = draw(st.sampled_from([None, None, None, "name", "shape", "datatype", "data"]))
    if missing:
        if draw(st.booleans()):
            del tensor[missing]
        else:
            tensor[missing] = None
    extra = draw(st.dictionaries(st.sampled_from(["parameters", "unit", "raw"]), JSON, max_size=1))
    return {**tensor, **extra}


def v2_body(known: list[int]) -> st.SearchStrategy:
    outputs = st.one_of(
        st.lists(
            st.fixed_dictionaries({"name": st.sampled_from([*OUTPUT_NAMES, "prob"]) | JSON}),
            max_size=3,
        ),
        JSON,
    )
    return st.one_of(
        st.fixed_dictionaries(
            {"inputs": st.one_of(st.lists(v2_tensor(known), max_size=3), JSON)},
            optional={
                "id": st.one_of(st.text(max_size=20), JSON),
                "parameters": st.one_of(st.dictionaries(st.text(max_size=8), SCALARS), JSON),
                "outputs": outputs,
                "instances": JSON,
            },
        ),
        JSON,
    )


@st.composite
def near_v1(draw: st.DrawFn, known: list[int]) -> dict:
    """A valid V1 body, then (mostly) one mutation: a wrong value, a missing or extra field."""
    fair_ids = st.one_of(st.sampled_from(known), st.integers(min_value=0, max_value=2**63 - 1))
    stamps = st.one_of(st.just(REQUEST_TS), TIMESTAMPS_OK, TIMESTAMPS_EARLY, TIMESTAMPS_BAD)
    instances = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        instance: dict[str, Any] = {"customer_id": draw(fair_ids)}
        if draw(st.booleans()):
            instance["request_ts"] = draw(stamps)
        instances.append(instance)
    body: dict[str, Any] = {"instances": instances}
    i = draw(st.integers(min_value=0, max_value=len(instances) - 1))
    mutation = draw(
        st.sampled_from(
            ["none", "id", "id", "ts", "ts", "extra", "drop", "instance", "instances", "top",
             "empty", "many"]
        )
    )  # fmt: skip
    if mutation == "id":
        instances[i]["customer_id"] = draw(ids(known))
    elif mutation == "ts":
        instances[i]["request_ts"] = draw(TIMESTAMPS)
    elif mutation == "extra":
        instances[i][draw(st.text(max_size=8))] = draw(JSON)
    elif mutation == "drop":
        del instances[i]["customer_id"]
    elif mutation == "instance":
        instances[i] = draw(JSON)
    elif mutation == "instances":
        body["instances"] = draw(JSON)
    elif mutation == "top":
        body[draw(st.sampled_from(["id", "inputs", "parameters", "instance"]))] = draw(JSON)
    elif mutation == "empty":
        body["instances"] = []
    elif mutation == "many":
        body["instances"] = instances[:1] * (BASE.serving.max_instances + 1)
    return body


@st.composite
def near_v2(draw: st.DrawFn, known: list[int]) -> dict:
    """A valid V2 body, then (mostly) one mutation of the envelope or a tensor."""
    batch = draw(
        st.lists(
            st.one_of(st.sampled_from(known), st.integers(min_value=0, max_value=2**63 - 1)),
            min_size=1,
            max_size=3,
        )
    )
    ids_tensor = {"name": "customer_id", "shape": [len(batch)], "datatype": "INT64", "data": batch}
    inputs = [ids_tensor]
    if draw(st.booleans()):
        stamp = draw(
            st.one_of(st.just(REQUEST_TS), TIMESTAMPS_OK, TIMESTAMPS_EARLY, TIMESTAMPS_BAD)
        )
        inputs.append(
            {"name": "request_ts", "shape": [len(batch)], "datatype": "BYTES",
             "data": [stamp] * len(batch)}
        )  # fmt: skip
    body: dict[str, Any] = {"inputs": inputs}
    if draw(st.booleans()):
        body["id"] = draw(st.text(max_size=12))
    tensor = draw(st.sampled_from(inputs))
    mutation = draw(
        st.sampled_from(
            ["none", "value", "value", "name", "datatype", "shape", "shape", "drop", "null",
             "extra", "parameters", "twice", "id", "outputs", "top", "tensor", "inputs"]
        )
    )  # fmt: skip
    if not _mutate_v2_tensor(draw, known, mutation, tensor, len(batch)):
        _mutate_v2_envelope(draw, mutation, body, inputs, tensor)
    return body


def _mutate_v2_tensor(
    draw: st.DrawFn, known: list[int], mutation: str, tensor: dict, n: int
) -> bool:
    """Apply a mutation of one tensor's fields; False when `mutation` is not one of those."""
    if mutation == "value":
        values = tensor["data"]
        values[draw(st.integers(min_value=0, max_value=len(values) - 1))] = draw(
            ids(known) if tensor["name"] == "customer_id" else TIMESTAMPS
        )
    elif mutation == "name":
        tensor["name"] = draw(st.one_of(st.sampled_from(["customer", "request_ts", ""]), JSON))
    elif mutation == "datatype":
        tensor["datatype"] = draw(
            st.one_of(st.sampled_from(["INT32", "int64", "FP32", "FP16", "BYTES", "UINT64"]), JSON)
        )
    elif mutation == "shape":
        tensor["shape"] = draw(
            st.one_of(
                st.lists(st.integers(min_value=-3, max_value=2**64), max_size=3),
                st.sampled_from([[n, 1], [], [-1], ["1"], [True], [1.0], [None]]),
                JSON,
            )
        )
    elif mutation in ("drop", "null"):
        field = draw(st.sampled_from(["name", "shape", "datatype", "data"]))
        if mutation == "drop":
            del tensor[field]
        else:
            tensor[field] = None
    elif mutation == "extra":
        tensor[draw(st.sampled_from(["unit", "raw_data", "contents"]))] = draw(JSON)
    else:
        return False
    return True


def _mutate_v2_envelope(
    draw: st.DrawFn, mutation: str, body: dict, inputs: list, tensor: dict
) -> None:
    """Apply a mutation of the body around the tensors ("none" leaves it valid)."""
    if mutation == "parameters":
        target = draw(st.sampled_from([body, tensor]))
        target["parameters"] = draw(
            st.one_of(st.dictionaries(st.text(max_size=8), SCALARS, max_size=3), JSON)
        )
    elif mutation == "twice":
        inputs.append(dict(tensor))
    elif mutation == "id":
        body["id"] = draw(JSON)
    elif mutation == "outputs":
        body["outputs"] = draw(
            st.one_of(
                st.lists(
                    st.fixed_dictionaries(
                        {"name": st.one_of(st.sampled_from([*OUTPUT_NAMES, "prob"]), JSON)}
                    ),
                    max_size=3,
                ),
                JSON,
            )
        )
    elif mutation == "top":
        body[draw(st.sampled_from(["instances", "model", "data"]))] = draw(JSON)
    elif mutation == "tensor":
        inputs[inputs.index(tensor)] = draw(JSON)
    elif mutation == "inputs":
        body["inputs"] = draw(JSON)
