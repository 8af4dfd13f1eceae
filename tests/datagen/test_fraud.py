"""Fraud on orders: its share, its delayed chargebacks, its drift, and that churn's data is untouched."""

import datetime as dt
import hashlib
import json

import numpy as np
import pyarrow as pa
import pytest

from mlops_assets.datagen import simulate
from mlops_assets.datagen.simulate import DayGenerator, fraud_on, orders_on
from mlops_assets.testing import small_world
from mlops_assets.world import World, load_world, world_path

WORLD = small_world(5000, seed=5)
DAYS = 150
FRAUD_DRIFT_DAY = dt.date(2025, 3, 1)
CHURN_TABLES = ("customers", "orders", "support_tickets")


def _day(world: World, i: int) -> dt.date:
    return world.start_date + dt.timedelta(days=i)


def _fraud(world: World, days: range) -> np.ndarray:
    return np.concatenate([fraud_on(world, d)["is_fraud"] for d in days])


def _payments(world: World, days: range) -> pa.Table:
    return pa.concat_tables(DayGenerator(world, _day(world, d)).payments() for d in days)


def _forget_cached_days() -> None:
    for cached in (simulate.orders_on, simulate.fraud_on, simulate.tickets_opened_on):
        cached.cache_clear()


def test_churn_tables_are_the_bytes_they_were_before_fraud():
    """The digest of the three churn tables as generated before fraud existed (default drift
    days, so the covariate and concept drift are on for day 170)."""
    world = World(n_customers=3000, seed=7)
    digest = hashlib.sha256()
    for i in (0, 40, 170):
        gen = DayGenerator(world, _day(world, i))
        for table in CHURN_TABLES:
            digest.update(repr(gen.table(table).to_pydict()).encode())
    assert digest.hexdigest() == "3dfbc2aefce6a6e69c410d7bc10104c510bfbafe824517e382d7b67c861a600c"


@pytest.mark.parametrize("table", CHURN_TABLES)
def test_fraud_drift_leaves_the_churn_tables_alone(table):
    drifted = WORLD.model_copy(update={"fraud_drift_from": FRAUD_DRIFT_DAY})
    for i in (0, 40, 59, 60, 100):
        a = DayGenerator(WORLD, _day(WORLD, i)).table(table)
        assert a.equals(DayGenerator(drifted, _day(drifted, i)).table(table))


def test_one_to_two_percent_of_orders_are_fraud():
    share = _fraud(WORLD, range(DAYS)).mean()
    assert 0.01 <= share <= 0.02


def test_every_order_is_paid_once():
    for i in (0, 70):
        orders = DayGenerator(WORLD, _day(WORLD, i)).orders()
        payments = DayGenerator(WORLD, _day(WORLD, i)).payments()
        assert payments["order_id"].equals(orders["order_id"])
        assert payments["customer_id"].equals(orders["customer_id"])


def test_chargebacks_come_7_to_60_days_after_a_fraudulent_order():
    ordered_at, fraud = {}, set()
    for d in range(DAYS):
        drawn = orders_on(WORLD, d)
        ordered_at.update(
            zip(drawn["order_id"].tolist(), drawn["ordered_us"].tolist(), strict=True)
        )
        fraud.update(drawn["order_id"][fraud_on(WORLD, d)["is_fraud"]].tolist())
    charged = []
    for d in range(DAYS):
        table = DayGenerator(WORLD, _day(WORLD, d)).chargebacks()
        day_start = simulate._day_start_us(WORLD, d)
        for row in table.to_pylist():
            reported_us = int(row["reported_at"].timestamp() * 1_000_000)
            assert day_start <= reported_us < day_start + 86_400_000_000  # lands when reported
            lag_days = (reported_us - ordered_at[row["order_id"]]) / 86_400_000_000
            assert 7 <= lag_days < 60
            charged.append(row["order_id"])
    assert len(charged) == len(set(charged)) and set(charged) <= fraud
    # Most fraud is charged back; fraud old enough to have had its whole window, nearly all.
    early = {o for o in fraud if ordered_at[o] < simulate._day_start_us(WORLD, DAYS - 60)}
    assert 0.85 <= len(early & set(charged)) / len(early) < 1.0


def test_a_day_is_the_same_whatever_was_generated_before():
    day = _day(WORLD, 90)
    warm = {t: DayGenerator(WORLD, day).table(t) for t in ("payments", "chargebacks")}
    _forget_cached_days()
    cold_world = small_world(5000, seed=5)
    for table, data in warm.items():
        assert data.num_rows > 0
        assert DayGenerator(cold_world, day).table(table).equals(data)
    other_seed = WORLD.model_copy(update={"seed": 6})
    assert not DayGenerator(other_seed, day).payments().equals(warm["payments"])


def test_fraud_is_visible_in_what_lands():
    """New accounts, risky payment methods and foreign ship countries carry the fraud."""
    fraud = _fraud(WORLD, range(DAYS))
    payments = _payments(WORLD, range(DAYS))
    method = np.array(payments["payment_method"].to_pylist())
    risky = np.isin(method, ["gift_card", "prepaid_card"])
    assert fraud[risky].mean() > 10 * fraud[~risky].mean()
    pop = simulate.population_for(WORLD)
    cust = np.concatenate([orders_on(WORLD, d)["cust"] for d in range(DAYS)])
    abroad = np.array(payments["ship_country"].to_pylist()) != pop.country[cust]
    assert fraud[abroad].mean() > 10 * fraud[~abroad].mean()
    age = np.repeat(np.arange(DAYS), [len(orders_on(WORLD, d)["cust"]) for d in range(DAYS)])
    new = (age - pop.signup_day[cust]) < 14
    assert fraud[new].mean() > 3 * fraud[~new].mean()


def test_fraud_drift_changes_the_fraud_pattern_only_from_its_day():
    drifted = WORLD.model_copy(update={"fraud_drift_from": FRAUD_DRIFT_DAY})
    switch = drifted.day_index(FRAUD_DRIFT_DAY)
    before, after = range(0, switch), range(switch, DAYS)
    assert _payments(drifted, before).equals(_payments(WORLD, before))
    # Which orders are fraud does not move; how they are paid does.
    np.testing.assert_array_equal(_fraud(drifted, after), _fraud(WORLD, after))
    fraud = _fraud(drifted, after)
    for world, wallet_share in ((WORLD, (0.0, 0.1)), (drifted, (0.5, 1.0))):
        method = np.array(_payments(world, after)["payment_method"].to_pylist())
        share = (method[fraud] == "apple_pay").mean()
        assert wallet_share[0] <= share <= wallet_share[1]


def test_a_world_file_from_before_fraud_still_loads(tmp_path):
    old = World().model_dump(mode="json")
    del old["fraud_drift_from"]
    world_path(tmp_path).write_text(json.dumps(old))
    assert load_world(tmp_path).fraud_drift_from is None
    with pytest.raises(ValueError, match="before the world's first day"):
        World(fraud_drift_from=World().start_date - dt.timedelta(days=1))


def test_the_demo_options_switch_the_fraud_drift_alone():
    """`mlops demo --no-drift --fraud-drift-day 100`: the customers' drift off, fraud's on; the
    demo's first models learn what was known before it (drift_from)."""
    world = World().with_options(no_drift=True, fraud_drift_day=100)
    start = world.start_date
    assert world.covariate_drift_from is None and world.concept_drift_from is None
    assert world.fraud_drift_from == start + dt.timedelta(days=100)
    assert world.drift_from == world.fraud_drift_from
    assert "fraud" in world.drifts() and "tiktok" not in world.drifts()
    both = World().with_options(fraud_drift_day=100)
    assert both.drift_from == start + dt.timedelta(days=100)  # the earlier switch
    assert both.covariate_drift_from == World().covariate_drift_from
    assert World().with_options(no_drift=True).drifts() == "a world without drift"
