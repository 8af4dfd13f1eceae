"""Feast over the real gold tables of a small generated shop: point-in-time correctness, online ==
historical, idempotent and monotonic materialization, and the training set's refusals."""

import dataclasses
import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from mlops_assets.datasets.training_set import (
    DatasetError,
    Labels,
    build_training_set,
    historical_features,
    load_labels,
    service_features,
)
from mlops_assets.features.bulk import bulk_materialize
from mlops_assets.features.online import OnlineFeatureReader
from mlops_assets.features.store import apply_feature_repo, repo_contents
from mlops_assets.model_config import model_configs
from mlops_assets.testing import build_shop, scratch_world
from mlops_assets.testing import online_rows as stored_rows

pytestmark = pytest.mark.slow
DAYS = 120
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
END = START + dt.timedelta(days=DAYS)
LABELS = Labels.of(model_configs()["churn"])  # churn_v1's labels


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """Landing data for 5000 customers over 120 days, `dbt build`, Feast applied."""
    root = tmp_path_factory.mktemp("shop")
    with scratch_world(root, 5000) as (settings, res):
        store = build_shop(settings, days=DAYS, run_dbt_tests=True)
        yield settings, store, res.warehouse


def gold(settings, sql: str) -> pd.DataFrame:
    path = settings.gold_dir / "customer_features.parquet"
    return duckdb.sql(sql.replace("GOLD", f"read_parquet('{path}')")).df()


def online_rows(settings) -> list[tuple]:
    return stored_rows(settings.data_dir / "feast" / "online.db")


def test_point_in_time_join_never_uses_a_later_snapshot(shop):
    settings, store, _ = shop
    # A customer whose lifetime value differs between two consecutive snapshots: asking between
    # them must give the earlier value; a leak would give the later one.
    pair = gold(
        settings,
        """
        with s as (
            select customer_id, event_timestamp, lifetime_value_usd, last_order_at,
                   lead(event_timestamp) over w as next_ts, lead(lifetime_value_usd) over w as next_ltv
            from GOLD window w as (partition by customer_id order by event_timestamp)
        )
        select * from s
        where next_ltv is not null and next_ltv <> lifetime_value_usd
          and next_ts = event_timestamp + interval 7 day
        qualify row_number() over (partition by customer_id order by event_timestamp) = 1
        order by customer_id
        limit 20
        """,
    )
    assert len(pair) == 20
    between = pair["event_timestamp"] + pd.Timedelta(days=3)
    labels = pd.DataFrame(
        {
            "customer_id": pair["customer_id"],
            "event_timestamp": between.dt.tz_localize("UTC"),
            "churned": 0,
        }
    )
    got = historical_features(store, LABELS, labels).set_index("customer_id")
    for row in pair.itertuples():
        assert got.loc[row.customer_id, "lifetime_value_usd"] == pytest.approx(
            row.lifetime_value_usd
        )
        assert got.loc[row.customer_id, "lifetime_value_usd"] != pytest.approx(row.next_ltv)
        # The request-time feature is measured at the as-of time, not at the snapshot.
        expected_days = (between[row.Index] - row.last_order_at).total_seconds() / 86400
        assert got.loc[row.customer_id, "days_since_last_order_now"] == pytest.approx(expected_days)


def _utc(value) -> pd.Timestamp:
    # Gold stores naive UTC timestamps; the online path returns aware ones.
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def test_online_equals_historical_for_1000_entities(shop):
    settings, store, _ = shop
    store.materialize(start_date=START, end_date=END)
    latest = gold(
        settings,
        "select customer_id, event_timestamp from GOLD "
        "where event_timestamp = (select max(event_timestamp) from GOLD)",
    )
    assert len(latest) >= 1000
    sample = latest.sample(1000, random_state=1)
    as_of = sample["event_timestamp"].iloc[0].tz_localize("UTC") + pd.Timedelta(hours=6)
    labels = pd.DataFrame(
        {"customer_id": sample["customer_id"], "event_timestamp": as_of, "churned": 0}
    )
    historical = historical_features(store, LABELS, labels).set_index("customer_id")

    stored, on_demand = service_features(store, "churn_v1")
    ids = sample["customer_id"].tolist()
    sdk = pd.DataFrame(
        store.get_online_features(
            features=store.get_feature_service("churn_v1"),
            entity_rows=[{"customer_id": i, "request_ts": as_of.to_pydatetime()} for i in ids],
        ).to_dict()
    ).set_index("customer_id")
    fast = pd.DataFrame(
        OnlineFeatureReader(store, "churn_v1").read(ids, as_of.to_pydatetime()), index=ids
    )

    mismatches = []
    for name in stored + on_demand:
        for cid in ids:
            h = historical.loc[cid, name]
            for source, frame in (("sdk", sdk), ("fast", fast)):
                o = frame.loc[cid, name]
                if isinstance(h, pd.Timestamp) or isinstance(o, dt.datetime):
                    same = _utc(h) == _utc(o)
                elif isinstance(h, float | np.floating):
                    same = o is not None and np.isclose(h, o, rtol=1e-9)
                else:
                    same = h == o
                if not same:
                    mismatches.append((source, cid, name, h, o))
    assert mismatches == []


def test_rematerializing_a_window_leaves_the_store_identical(shop):
    settings, store, _ = shop
    store.materialize(start_date=START, end_date=END)
    before = online_rows(settings)
    store.materialize(start_date=START, end_date=END)
    store.materialize(start_date=END - dt.timedelta(days=7), end_date=END)
    assert online_rows(settings) == before
    assert len(before) > 1000


def test_an_older_event_never_overwrites_a_newer_one(shop):
    settings, store, _ = shop
    store.materialize(start_date=START, end_date=END)
    newest = online_rows(settings)
    # Replay an early window after the late one: every entity it touches already has newer values.
    store.materialize(start_date=START, end_date=START + dt.timedelta(days=60))
    assert online_rows(settings) == newest


def recorded_intervals(store) -> dict[str, list[tuple[dt.datetime, dt.datetime]]]:
    store.refresh_registry()
    return {v.name: list(v.materialization_intervals) for v in store.list_feature_views()}


def test_bulk_materialization_writes_exactly_what_feast_writes(shop):
    settings, store, _ = shop
    store.teardown()
    apply_feature_repo(store)
    before = recorded_intervals(store)
    store.materialize(start_date=START, end_date=END)
    through_feast = online_rows(settings)
    # Feast records the window per view; the bulk path must record the same.
    feast_recorded = {v: i[len(before[v]) :] for v, i in recorded_intervals(store).items()}
    assert feast_recorded == {view: [(START, END)] for view in before}
    store.teardown()
    apply_feature_repo(store)
    before = recorded_intervals(store)
    written = bulk_materialize(store, START, END)
    assert set(written) == {
        "customer_profile",
        "customer_orders",
        "customer_support",
        "order_details",
        "order_velocity",
    }
    assert online_rows(settings) == through_feast
    bulk_recorded = {v: i[len(before[v]) :] for v, i in recorded_intervals(store).items()}
    assert bulk_recorded == feast_recorded
    # Replaying windows through the bulk path is idempotent and monotonic as well, and an older
    # window never moves the incremental watermark back.
    bulk_materialize(store, START, START + dt.timedelta(days=60))
    bulk_materialize(store, START, END)
    assert online_rows(settings) == through_feast
    store.refresh_registry()
    assert {v.most_recent_end_time for v in store.list_feature_views()} == {END}
    assert all(a <= b for i in recorded_intervals(store).values() for a, b in i)


def test_training_set_is_split_by_time_and_counts_add_up(shop, tmp_path):
    _, store, warehouse = shop
    labels = load_labels(warehouse, LABELS)
    summary = build_training_set(store, LABELS, labels, tmp_path / "ds")
    assert sum(summary.rows.values()) == len(labels)
    parts = {
        s: pd.read_parquet(tmp_path / "ds" / f"{s}.parquet")
        for s in ("train", "validation", "test")
    }
    assert parts["train"]["event_timestamp"].max() < parts["validation"]["event_timestamp"].min()
    assert parts["validation"]["event_timestamp"].max() < parts["test"]["event_timestamp"].min()
    assert 0.05 < summary.positive_rate["train"] < 0.95
    assert set(summary.features) <= set(parts["train"].columns)


def test_same_inputs_same_bytes(shop, tmp_path):
    _, store, warehouse = shop
    labels = load_labels(warehouse, LABELS)
    build_training_set(store, LABELS, labels, tmp_path / "a")
    build_training_set(store, LABELS, labels.sample(frac=1, random_state=3), tmp_path / "b")
    for name in ("train.parquet", "validation.parquet", "test.parquet", "schema.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_labels_in_the_future_are_refused_with_counts(shop, tmp_path):
    _, store, warehouse = shop
    labels = load_labels(warehouse, LABELS)
    future = labels.head(7).copy()
    future["event_timestamp"] = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=30)
    with pytest.raises(DatasetError, match=r"7 of .* in the future") as err:
        build_training_set(store, LABELS, pd.concat([labels, future]), tmp_path / "x")
    assert err.value.counts["future_rows"] == 7
    assert not (tmp_path / "x").exists()


def test_unknown_entities_are_refused_not_dropped(shop, tmp_path):
    _, store, warehouse = shop
    labels = load_labels(warehouse, LABELS)
    ghosts = labels.head(5).copy()
    ghosts["customer_id"] = ghosts["customer_id"] + 10_000_000
    with pytest.raises(DatasetError, match=r"5 of .* found no features") as err:
        build_training_set(store, LABELS, pd.concat([labels, ghosts]), tmp_path / "x")
    assert err.value.counts["rows_without_features"] == 5


def test_unknown_feature_service_is_a_clear_error(shop, tmp_path):
    _, store, warehouse = shop
    unknown = dataclasses.replace(LABELS, service="churn_v9")
    with pytest.raises(DatasetError, match="unknown feature service 'churn_v9'"):
        build_training_set(store, unknown, load_labels(warehouse, LABELS), tmp_path / "x")


def test_a_service_naming_an_unknown_feature_is_rejected(shop):
    _, store, _ = shop
    from feast import FeatureService

    from_repo = {v.name: v for v in repo_contents().feature_views}
    with pytest.raises(Exception, match="no_such_feature"):
        bad = FeatureService(
            name="churn_bad", features=[from_repo["customer_orders"][["no_such_feature"]]]
        )
        store.apply([bad])
