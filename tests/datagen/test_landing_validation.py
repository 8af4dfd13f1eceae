import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq

from mlops_assets.datagen.landing import (
    land_day,
    partition_files,
    validate_landing,
    write_partition,
)
from mlops_assets.datagen.tables import LANDING_TABLES
from mlops_assets.testing import small_world

CFG = small_world(1500, seed=11)
DAYS = [CFG.start_date + dt.timedelta(days=i) for i in range(3)]


def _land(root: str) -> None:
    for day in DAYS:
        land_day(CFG, root, day)


def test_clean_delivery_passes(tmp_path):
    root = str(tmp_path)
    _land(root)
    for table in LANDING_TABLES:
        v = validate_landing(root, table, DAYS)
        # No chargeback is reported in the first days (they come a week late at the earliest).
        assert v.files == 3 and (v.rows > 0) == (table != "chargebacks")
        assert v.schema_ok and v.null_key_rows == 0 and v.duplicate_key_rows == 0


def test_rewriting_a_day_replaces_it_and_leaves_no_temp_files(tmp_path):
    root = str(tmp_path)
    _land(root)
    land_day(CFG, root, DAYS[1])
    assert [p.rsplit("/", 1)[1] for p in partition_files(root, "orders", DAYS[1])] == [
        "part-0.parquet"
    ]
    assert not list(tmp_path.rglob("*.tmp"))


def _orders(root: str, day: dt.date) -> pa.Table:
    return pq.read_table(partition_files(root, "orders", day)[0])


def test_duplicate_orders_are_counted(tmp_path):
    root = str(tmp_path)
    _land(root)
    orders = _orders(root, DAYS[2])
    write_partition(root, "orders", DAYS[2], pa.concat_tables([orders, orders.slice(0, 5)]))
    v = validate_landing(root, "orders", DAYS)
    assert v.duplicate_key_rows == 5
    assert v.schema_ok and v.null_key_rows == 0


def test_null_keys_are_counted(tmp_path):
    root = str(tmp_path)
    _land(root)
    orders = _orders(root, DAYS[0])
    ids = orders["order_id"].to_pylist()
    ids[:3] = [None, None, None]
    bad = orders.set_column(0, pa.field("order_id", pa.int64()), pa.array(ids, pa.int64()))
    write_partition(root, "orders", DAYS[0], bad)
    v = validate_landing(root, "orders", DAYS)
    assert v.null_key_rows == 3
    assert v.metadata()["null_key_rows"] == 3


def test_wrong_schema_and_missing_day_are_reported(tmp_path):
    root = str(tmp_path)
    _land(root)
    orders = _orders(root, DAYS[1])
    bad = orders.drop_columns(["items"]).set_column(
        orders.schema.get_field_index("amount"), "amount", orders["amount"].cast(pa.string())
    )
    write_partition(root, "orders", DAYS[1], bad)
    missing = DAYS[-1] + dt.timedelta(days=1)
    v = validate_landing(root, "orders", [*DAYS, missing])
    assert not v.schema_ok
    text = "; ".join(v.schema_errors)
    assert "'items' is missing" in text
    assert "'amount' is string, expected double" in text
    assert v.missing_days == [missing.isoformat()]
