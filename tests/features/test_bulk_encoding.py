"""The vectorized encoders and the online reader's decoder agree with Feast's own (de)serialization,
value by value."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import RepeatedValue, Value

from mlops_assets.features.bulk import _encode_column, _varints, entity_keys

INTS = [0, 1, 127, 128, 300, 2**31, 2**53 + 7, 2**63 - 1, -1, -300, -(2**63)]


def test_varints_match_protobuf():
    got = _varints(np.array(INTS, dtype=np.int64)).to_pylist()
    for value, encoded in zip(INTS, got, strict=True):
        assert b"\x20" + encoded == Value(int64_val=value).SerializeToString()


def test_entity_keys_match_feast():
    ids = np.array([1, 42, 10_000_000_123, 2**40], dtype=np.int64)
    expected = [
        serialize_entity_key(
            EntityKey(join_keys=["customer_id"], entity_values=[Value(int64_val=int(i))]), 3
        )
        for i in ids
    ]
    assert entity_keys(ids, "customer_id") == expected


@pytest.mark.parametrize(
    ("feast_type", "values", "protos"),
    [
        ("Int64", [5, None, -2], [Value(int64_val=5), Value(), Value(int64_val=-2)]),
        (
            "Float64",
            [1.5, None, float("nan"), 0.0],
            [Value(double_val=1.5), Value(), Value(), Value(double_val=0.0)],
        ),
        (
            "String",
            ["VN", None, "", "é"],
            [Value(string_val="VN"), Value(), Value(string_val=""), Value(string_val="é")],
        ),
        (
            "UnixTimestamp",
            [dt.datetime(2025, 3, 1, 12, 0, 5), None],
            [Value(unix_timestamp_val=1740830405), Value()],
        ),
    ],
)
def test_columns_encode_as_repeated_value_elements(feast_type, values, protos):
    column = pa.chunked_array([pa.array(values)])
    elements = _encode_column(column, feast_type).to_pylist()
    for element, proto in zip(elements, protos, strict=True):
        assert RepeatedValue.FromString(element).val[0] == proto


def test_online_reader_decodes_values_as_feast_does():
    from feast.protos.feast.types.Value_pb2 import Int64List, StringList
    from feast.type_map import feast_value_type_to_python_type

    from mlops_assets.features.online import python_value

    values = [
        Value(),  # no value stored
        Value(int64_val=-(2**63)),
        Value(int32_val=7),
        Value(double_val=float("nan")),
        Value(double_val=2.5),
        Value(float_val=0.1),
        Value(string_val="premium"),
        Value(string_val=""),
        Value(bool_val=False),
        Value(bytes_val=b"\x00\x01"),
        Value(unix_timestamp_val=1_700_000_000),  # the SDK's conversions still apply
        Value(int64_list_val=Int64List(val=[1, 2])),
        Value(string_list_val=StringList(val=["a"])),
    ]
    for value in values:
        ours, feasts = python_value(value), feast_value_type_to_python_type(value)
        assert type(ours) is type(feasts)
        assert ours == feasts or (ours != ours and feasts != feasts), value  # NaN equals NaN
