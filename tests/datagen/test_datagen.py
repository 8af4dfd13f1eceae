import datetime as dt

import numpy as np
import pyarrow.compute as pc
import pytest

from mlops_assets.datagen.simulate import SCHEMAS, DayGenerator, build_population
from mlops_assets.testing import small_world

BASE = small_world(3000, seed=7)
DRIFT_DAY = dt.date(2025, 3, 1)


def _day(i: int) -> dt.date:
    return BASE.start_date + dt.timedelta(days=i)


@pytest.mark.parametrize("table", list(SCHEMAS))
def test_same_config_same_rows(table):
    a = DayGenerator(BASE, _day(40)).table(table)
    b = DayGenerator(small_world(3000, seed=7), _day(40)).table(table)
    assert a.num_rows > 0
    assert a.equals(b)
    assert a.schema.equals(SCHEMAS[table])


def test_other_seed_other_rows():
    a = DayGenerator(BASE, _day(40)).orders()
    b = DayGenerator(BASE.model_copy(update={"seed": 8}), _day(40)).orders()
    assert not a.equals(b)


def test_a_day_does_not_depend_on_which_days_were_generated_before():
    fresh = DayGenerator(small_world(3000, seed=7), _day(10)).support_tickets()
    for i in range(10):
        DayGenerator(BASE, _day(i)).support_tickets()
    assert DayGenerator(BASE, _day(10)).support_tickets().equals(fresh)


def test_ids_are_unique_across_days_and_orders_reference_known_customers():
    customers, order_ids = set(), []
    for i in range(30):
        gen = DayGenerator(BASE, _day(i))
        customers.update(gen.customers()["customer_id"].to_pylist())
        orders = gen.orders()
        order_ids.extend(orders["order_id"].to_pylist())
        assert set(orders["customer_id"].to_pylist()) <= customers
    assert len(order_ids) == len(set(order_ids))


def test_first_day_carries_the_backlog():
    first = DayGenerator(BASE, _day(0)).customers().num_rows
    later = DayGenerator(BASE, _day(1)).customers().num_rows
    assert first > 0.3 * BASE.n_customers
    assert later < 0.05 * BASE.n_customers


def test_day_before_start_is_refused():
    with pytest.raises(ValueError, match="before the source's first day"):
        DayGenerator(BASE, BASE.start_date - dt.timedelta(days=1))


def test_covariate_drift_brings_a_new_channel_only_after_its_day():
    drifted = BASE.model_copy(update={"covariate_drift_from": DRIFT_DAY})
    before = build_population(BASE)
    after = build_population(drifted)
    drift_idx = drifted.day_index(DRIFT_DAY)
    new_channel = after.channel == "tiktok"
    assert new_channel.any()
    assert (after.signup_day[new_channel] >= drift_idx).all()
    assert not (before.channel == "tiktok").any()
    # The newcomers look different: younger and lower-spending.
    assert after.birth_year[new_channel].mean() > after.birth_year[~new_channel].mean() + 5
    assert after.log_aov[new_channel].mean() < after.log_aov[~new_channel].mean()


def test_concept_drift_changes_churn_only_after_its_day():
    drifted = BASE.model_copy(update={"concept_drift_from": DRIFT_DAY})
    before = build_population(BASE)
    after = build_population(drifted)
    drift_idx = drifted.day_index(DRIFT_DAY)
    early = before.churn_day < drift_idx
    # Who churned before the switch is untouched; later churn times move.
    np.testing.assert_array_equal(before.churn_day[early], after.churn_day[early])
    assert not np.allclose(before.churn_day[~early], after.churn_day[~early])
    # After the switch discount appetite drives churn much harder.
    hungry = after.discount_p > np.quantile(after.discount_p, 0.8)
    late = ~early & (after.signup_day < drift_idx)
    life_before = (before.churn_day - drift_idx)[late & hungry].mean()
    life_after = (after.churn_day - drift_idx)[late & hungry].mean()
    assert life_after < 0.7 * life_before


def test_churn_is_driven_by_observable_behaviour():
    pop = build_population(small_world(20_000, seed=3))
    lifetime = pop.churn_day - pop.signup_day
    # More support friction and more discount appetite -> shorter lives; more orders -> longer.
    assert np.corrcoef(np.log(pop.ticket_rate), lifetime)[0, 1] < -0.1
    assert np.corrcoef(pop.discount_p, lifetime)[0, 1] < -0.05
    assert np.corrcoef(np.log(pop.order_rate), lifetime)[0, 1] > 0.1


def test_tickets_land_open_then_resolved():
    opened, resolved = set(), set()
    for i in range(20):
        t = DayGenerator(BASE, _day(i)).support_tickets()
        status = t["status"].to_pylist()
        ids = t["ticket_id"].to_pylist()
        opened.update(x for x, s in zip(ids, status, strict=True) if s == "open")
        resolved.update(x for x, s in zip(ids, status, strict=True) if s == "resolved")
        assert pc.all(pc.greater_equal(t["updated_at"], t["created_at"])).as_py()
    assert resolved and resolved <= opened
