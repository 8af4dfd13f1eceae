"""The label engine's two forms agree: `apply_rules` (numpy, a batch's columns) and
`apply_rules_rows` (plain Python, a request's rows), on generated scores, thresholds and feature
values (missing, NaN, infinite, unseen categories, exactly on a band edge or a minimum)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_assets.model_config import model_configs
from mlops_assets.serving.label_engine import apply_rules, apply_rules_rows

CONFIGS = model_configs()
EDGES = sorted({b.min_score for c in CONFIGS.values() for b in c.label_engine.bands})
CATEGORIES = sorted(
    {str(v) for c in CONFIGS.values() for o in c.label_engine.overrides for a in o.when.values()
     for v in a} | {"free", "loyal", "never-seen"}
)  # fmt: skip
MINIMUMS = sorted(
    {float(m) for c in CONFIGS.values() for o in c.label_engine.overrides
     for m in o.min_values.values()}
)  # fmt: skip

scores = st.one_of(
    st.floats(0, 1), st.sampled_from(EDGES), st.just(math.nan), st.sampled_from([-0.1, 1.5])
)
numbers = st.one_of(
    st.none(),
    st.integers(-3, 5),
    st.sampled_from(MINIMUMS),
    st.floats(allow_nan=True, allow_infinity=True),
)


def rows_for(config):
    columns = {c for o in config.label_engine.overrides for c in (*o.when, *o.min_values)}
    categorical = {c for o in config.label_engine.overrides for c in o.when}
    return st.fixed_dictionaries(
        {
            c: st.one_of(st.none(), st.sampled_from(CATEGORIES)) if c in categorical else numbers
            for c in sorted(columns)
        }
    )


def case():
    return st.sampled_from(sorted(CONFIGS)).flatmap(
        lambda name: st.lists(
            st.tuples(scores, rows_for(CONFIGS[name]), st.sampled_from([0.5, *EDGES])),
            min_size=1,
            max_size=8,
        ).map(lambda rows: (name, rows))
    )


@settings(max_examples=400, deadline=None)
@given(case())
def test_row_form_equals_the_batch_form(generated):
    name, cases = generated
    rules = CONFIGS[name].label_engine
    score_list = [s for s, _, _ in cases]
    rows = [r for _, r, _ in cases]
    thresholds = [t for _, _, t in cases]
    frame = pd.DataFrame(rows, columns=sorted(rows[0]))
    batch = apply_rules(np.array(score_list), frame, rules, np.array(thresholds))
    by_row = apply_rules_rows(score_list, rows, rules, thresholds)
    assert by_row == {key: batch[key].tolist() for key in ("risk_band", "prediction", "rule")}


def test_an_override_raises_a_band_never_lowers_it():
    rules = CONFIGS["churn"].label_engine
    rows = [
        {"plan": "premium", "open_ticket_count": 2, "segment": "loyal"},
        {"plan": "premium", "open_ticket_count": 2, "segment": "loyal"},
        {"plan": "premium", "open_ticket_count": None, "segment": "new"},
    ]
    out = apply_rules_rows([0.1, 0.9, 0.1], rows, rules, [0.5, 0.5, 0.5])
    assert out == {
        "risk_band": ["high", "critical", "medium"],
        "prediction": [0, 1, 0],
        "rule": ["override:premium_with_open_tickets", "score", "override:new_customer_watch"],
    }
