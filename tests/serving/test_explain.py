"""Explanations: the contributions add up to the model's log-odds (trees and linear models), the
tree values are the Shapley values of the path-dependent game (brute force over every coalition),
and through the user's doors: `POST /v1/models/<model>:explain` on the real model server (churn
with its canary, fraud with two keys, the predict route's 4xx, a fuzz of the route) and the
daily predictions' `top_reasons` column, whose top reason is the route's for the same entity and
day."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_assets.model_config import model_configs
from mlops_assets.serving import batch
from mlops_assets.serving.explain import LinearExplainer, TreeShap, encode_frame, explainer_for
from mlops_assets.testing import synthetic_training_set
from mlops_assets.training.estimators import build_estimator, dataset_schema, read_split
from tests.serving.fuzz_requests import V1, V2, Pool, check, request
from tests.serving.serving_world import BASE, REQUEST_TS, call, customers, predict
from tests.serving.test_fraud_online import _pairs, _v1, fraud  # noqa: F401 (the fixture)

# Churn's own config leaves batch reasons off (its daily run scores every customer); on here.
CHURN = model_configs()["churn"].model_copy(
    update={"explain": model_configs()["churn"].explain.model_copy(update={"top_reasons_k": 3})}
)
EXPLAIN = f"/v1/models/{BASE.name}:explain"


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain") / "dataset"
    synthetic_training_set(folder, 6000, seed=5)
    train = read_split(folder, "train")
    return train[dataset_schema(folder)["features"]].drop(columns="last_order_at"), train


@pytest.fixture(scope="module")
def tree(frame):
    X, train = frame
    return build_estimator(CHURN, X).fit(X, train[CHURN.label])


@pytest.fixture(scope="module")
def linear(frame):
    X, train = frame
    return build_estimator(CHURN, X, kind="baseline").fit(X, train[CHURN.label])


def _log_odds(model, X: pd.DataFrame) -> np.ndarray:
    p = model.predict_proba(X)[:, 1]
    return np.log(p / (1 - p))


def test_tree_contributions_add_up_to_the_log_odds_per_original_feature(frame, tree):
    X, _ = frame
    explainer = explainer_for(tree)
    assert isinstance(explainer, TreeShap)
    rows = X.head(300)
    explanation = explainer.explain_frame(rows)
    assert explanation.features == list(X.columns)  # original names, categoricals included
    np.testing.assert_allclose(explanation.log_odds(), _log_odds(tree, rows), atol=1e-4, rtol=0)
    # One row as the server looks it up (dicts) equals the frame path.
    one = explainer.explain_rows(rows.head(1).to_dict(orient="records"))
    np.testing.assert_allclose(one.contributions[0], explanation.contributions[0], atol=1e-12)
    assert np.abs(explanation.contributions).sum(axis=0).max() > 0.05  # not all zero
    assert explainer_for(tree) is explainer  # built once per estimator
    # The compiled loop (numba, when installed) and the numpy one agree.
    encoded = encode_frame(explainer.compiled, rows)
    np.testing.assert_allclose(
        explainer._shap(encoded), explainer._shap_numpy(encoded), atol=1e-12, rtol=0
    )


def test_tree_values_are_the_shapley_values_of_the_path_dependent_game(frame):
    """A small forest with a categorical: each value equals the Shapley formula over every
    coalition of the game v(S) = E[f | x_S] under the trees' training cover."""
    X, train = frame
    X = X[["plan", "order_count_30d", "days_since_last_order", "ticket_count_30d", "segment"]]
    params = CHURN.params.model_copy(
        update={"max_iter": 4, "max_leaf_nodes": 6, "early_stopping": False}
    )
    model = build_estimator(CHURN.model_copy(update={"params": params}), X)
    model.fit(X, train[CHURN.label])
    explainer = explainer_for(model)
    rows = X.sample(6, random_state=1)
    got = explainer.explain_frame(rows).contributions
    compiled, clf = explainer.compiled, model.named_steps["clf"]
    counts = np.concatenate([it[0].nodes for it in clf._predictors])["count"]
    column = [list(X.columns).index(name) for name, _, _ in compiled.layout]
    go_left = explainer._go_left(compiled.encode(rows.to_dict(orient="records")))
    position = {int(node): k for k, node in enumerate(explainer._nodes)}  # the split nodes

    def value(r: int, present: set[int], node: int) -> float:
        if compiled.is_leaf[node]:
            return float(compiled.value[node])
        left, right = compiled.left[node], compiled.right[node]
        if column[compiled.feature[node]] in present:
            return value(r, present, left if go_left[r, position[node]] else right)
        share = counts[left] / counts[node]
        return share * value(r, present, left) + (1 - share) * value(r, present, right)

    n = X.shape[1]
    for r in range(len(rows)):

        def v(present: set[int], r=r) -> float:
            return sum(value(r, present, int(root)) for root in compiled.roots)

        for i in range(n):
            others = [j for j in range(n) if j != i]
            expected = sum(
                math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n)
                * (v({*s, i}) - v(set(s)))
                for size in range(n)
                for s in itertools.combinations(others, size)
            )  # fmt: skip
            assert got[r, i] == pytest.approx(expected, abs=1e-10), (r, X.columns[i])


def test_linear_contributions_are_exact_and_summed_over_one_hot_columns(frame, linear):
    X, _ = frame
    explainer = explainer_for(linear)
    assert isinstance(explainer, LinearExplainer)
    rows = X.head(300)
    explanation = explainer.explain_frame(rows)
    assert explanation.features == list(X.columns)
    decision = linear.decision_function(rows)
    np.testing.assert_allclose(explanation.log_odds(), decision, atol=1e-6, rtol=0)
    # Changing one categorical changes that feature's contribution only.
    row = rows.head(1).copy()
    other = next(p for p in ("free", "basic", "premium") if p != row["plan"].iloc[0])
    before = explainer.explain_frame(row).contributions[0]
    after = explainer.explain_frame(row.assign(plan=other)).contributions[0]
    changed = np.flatnonzero(np.abs(after - before) > 1e-12)
    assert [X.columns[j] for j in changed] == ["plan"]


def test_batch_rows_carry_their_top_reasons(frame, tree):
    X, train = frame
    features = train[["customer_id", *X.columns]].head(200)
    rows = batch.score(CHURN, tree, "7", features, dt.date(2025, 5, 1), dt.datetime.now(dt.UTC))
    reasons = [json.loads(text) for text in rows["top_reasons"].to_pylist()]
    expected = explainer_for(tree).explain_frame(X.head(200))
    assert all(len(r) == CHURN.explain.top_reasons_k for r in reasons)
    for i, top in enumerate(reasons):
        ranked = expected.ranked(i, CHURN.explain.top_reasons_k)
        assert [t["feature"] for t in top] == [f for f, _ in ranked]
        assert top[0]["contribution"] == pytest.approx(ranked[0][1], abs=1e-6)
    off = CHURN.model_copy(
        update={"explain": CHURN.explain.model_copy(update={"top_reasons_k": 0})}
    )
    rows = batch.score(off, tree, "7", features, dt.date(2025, 5, 1), dt.datetime.now(dt.UTC))
    assert rows["top_reasons"].null_count == len(features)


def test_a_predictions_table_from_before_top_reasons_gains_the_column(resources, frame, tree):
    """An existing table without `top_reasons`: opening it adds the column (old rows read null,
    no row rewritten), and a day scored afterwards carries its reasons."""
    from mlops_assets.lakehouse.catalog import partitioned_table
    from mlops_assets.lakehouse.tables import PREDICTIONS

    X, train = frame
    features = train[["customer_id", *X.columns]].head(50)
    day = dt.date(2025, 5, 1)
    scored = batch.score(CHURN, tree, "7", features, day, dt.datetime.now(dt.UTC))
    old_schema = pa.schema([f for f in PREDICTIONS.schema if f.name != "top_reasons"])
    cat = resources.lakehouse.catalog()
    old = partitioned_table(cat, PREDICTIONS.name(CHURN.name), old_schema, "prediction_date")
    old.append(scored.drop_columns(["top_reasons"]))
    rows_before = old.current_snapshot().summary["total-records"]

    table = PREDICTIONS.open(cat, CHURN.name)
    assert table.schema().column_names == PREDICTIONS.schema.names
    assert table.current_snapshot().summary["total-records"] == rows_before
    assert table.scan().to_arrow()["top_reasons"].null_count == len(features)
    batch.write_days(table, [day], scored)
    stored = table.refresh().scan().to_arrow()["top_reasons"].to_pylist()
    assert sorted(stored) == sorted(scored["top_reasons"].to_pylist()) and all(stored)


# -- through the model server ---------------------------------------------------------------------


def _explain(shop, ids: list[int], request_ts: str = REQUEST_TS) -> dict:
    body = {"instances": [{"customer_id": c, "request_ts": request_ts} for c in ids]}
    status, answer = call(f"{shop['url']}{EXPLAIN}", body)
    assert status == 200, answer
    return answer


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.mark.slow
def test_the_explain_route_answers_per_entity_with_contributions_that_add_up(shop):
    ids = customers(shop, 12)
    answer = _explain(shop, ids)
    predicted = {p["customer_id"]: p for p in predict(shop, ids)["predictions"]}
    assert answer["model_name"] == BASE.name and answer["id"]
    explanations = answer["explanations"]
    assert [e["customer_id"] for e in explanations] == ids
    assert {e["arm"] for e in explanations} == {"champion", "challenger"}  # trees and linear
    for e in explanations:
        p = predicted[e["customer_id"]]
        assert (e["model_version"], e["arm"]) == (p["model_version"], p["arm"])
        assert e["score"] == pytest.approx(p["score"], abs=1e-12)
        total = e["base_value"] + sum(c["contribution"] for c in e["contributions"])
        tolerance = 1e-6 if e["method"] == "linear_exact" else 1e-4
        assert total == pytest.approx(e["log_odds"], abs=tolerance)
        assert _sigmoid(e["log_odds"]) == pytest.approx(e["score"], abs=1e-9)
        sizes = [abs(c["contribution"]) for c in e["contributions"]]
        assert sizes == sorted(sizes, reverse=True)
        assert {c["feature"] for c in e["contributions"]} == set(e["features"])
        assert all(c["value"] == e["features"][c["feature"]] for c in e["contributions"])
        assert isinstance(e["features"]["plan"], str)  # as looked up, not encoded
    methods = {e["arm"]: e["method"] for e in explanations}
    assert methods == {"champion": "tree_shap_path_dependent", "challenger": "linear_exact"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "reason", "message"),
    [
        ({"instances": [{"customer_id": 10**12}]}, "unknown_customer", "unknown customer"),
        ({"instances": []}, "invalid_input", "empty batch"),
        ({"instances": [{"customer_id": "x"}]}, "invalid_input", "must be an integer"),
        ({"rows": [{"customer_id": 1}]}, "invalid_input", "instances"),
        (b"{not json", "invalid_json", "not valid JSON"),
        ({"instances": [{"customer_id": 1}] * 51}, "invalid_input", "the limit is 50"),
    ],
)
def test_the_explain_route_rejects_a_clients_mistake_like_predict(shop, body, reason, message):
    status, answer = call(f"{shop['url']}{EXPLAIN}", body)
    assert status == 400, answer
    assert answer["reason"] == reason and message in answer["error"], answer
    assert "Traceback" not in json.dumps(answer)


@pytest.mark.slow
def test_fraud_explains_an_order_by_both_keys(shop, fraud):  # noqa: F811
    pairs = _pairs(fraud, 3)
    status, answer = call(f"{shop['url']}/v1/models/fraud:explain", _v1(pairs, fraud["request_ts"]))
    assert status == 200, answer
    got = [(e["order_id"], e["customer_id"]) for e in answer["explanations"]]
    assert got == pairs
    for e in answer["explanations"]:
        total = e["base_value"] + sum(c["contribution"] for c in e["contributions"])
        assert total == pytest.approx(e["log_odds"], abs=1e-4)
        assert e["model_version"] == fraud["version"]
    missing_order = {"instances": [{"customer_id": pairs[0][1]}]}
    status, answer = call(f"{shop['url']}/v1/models/fraud:explain", missing_order)
    assert status == 400 and "'order_id'" in answer["error"], answer


@pytest.mark.slow
def test_the_explain_route_survives_fuzzing(shop):
    """Generated requests retargeted at :explain: never a 5xx, every 4xx has a message and a
    known reason, well-formed V1 ones answer 200 with explanations."""
    known = customers(shop, 50)
    pool = Pool(shop["port"], 2)

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(request(known), min_size=2, max_size=4))
    def fuzz(requests) -> None:
        for req in requests:
            valid = req.valid and req.path == V1
            if req.path in (V1, V2):
                req.path, req.valid = EXPLAIN, valid
            status, raw, response = pool.send(req)
            check(req, status, raw, response, pool)
            if valid:
                assert json.loads(raw)["explanations"], raw

    try:
        fuzz()
    finally:
        pool.close()
    assert not [s for s in pool.statuses if s >= 500]
    assert pool.statuses[200] >= 10 and sum(pool.reasons.values()) >= 10, pool.statuses


@pytest.mark.slow
def test_batch_top_reasons_agree_with_the_route_for_the_same_entity_and_day(shop):
    """A day scored with top reasons; the route asked as of that day's as-of time (the same
    feature values) names the same top reasons for the same customers."""
    day = dt.date(2025, 5, 29)
    res = shop["resources"]
    config = shop["config"].model_copy(update={"explain": CHURN.explain})
    summary = batch.score_days(
        res.lakehouse.catalog(), shop["store"], shop["registry"], config, [day]
    )
    table = batch.predictions_table(config).open(res.lakehouse.catalog(), BASE.name)
    rows = table.scan(row_filter=f"prediction_date = '{day}'").to_pandas()
    assert len(rows) == summary["rows"] and rows["top_reasons"].notna().all()
    sample = rows.sort_values("customer_id").head(10)
    as_of = batch.as_of(day).isoformat()
    answer = _explain(shop, [int(c) for c in sample["customer_id"]], as_of)
    for (_, row), e in zip(sample.iterrows(), answer["explanations"], strict=True):
        stored = json.loads(row["top_reasons"])
        assert len(stored) == config.explain.top_reasons_k
        assert row["model_version"] == e["model_version"]
        assert stored[0]["feature"] == e["contributions"][0]["feature"], (stored, e)
        assert stored[0]["contribution"] == pytest.approx(
            e["contributions"][0]["contribution"], abs=1e-5
        )
