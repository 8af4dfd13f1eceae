"""The tuning grid fitted side by side in worker processes chooses and scores exactly what one fit
after the other does."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_assets.model_config import model_configs
from mlops_assets.training.estimators import tune

CONFIG = model_configs()["churn"]


def _split(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "lifetime_value_usd": rng.gamma(2, 50, n),
            "order_count_30d": rng.integers(0, 6, n).astype(float),
            "plan": rng.choice(["free", "basic", "premium"], n),
        }
    )
    signal = frame["order_count_30d"] < 2
    frame[CONFIG.label] = ((rng.random(n) < 0.25) | signal).astype(int)
    return frame


def _tune(workers: int):
    config = CONFIG.model_copy(
        update={
            "tuning": CONFIG.tuning.model_copy(update={"workers": workers}),
            "params": CONFIG.params.model_copy(update={"max_iter": 30}),
        }
    )
    features = ["lifetime_value_usd", "order_count_30d", "plan"]
    return tune(config, _split(1, 2000), _split(2, 600), features)


def test_parallel_tuning_equals_sequential_tuning():
    one_by_one, trials_sequential = _tune(1)
    side_by_side, trials_parallel = _tune(3)
    assert len(trials_parallel) == len(CONFIG.tuning.candidates(CONFIG.params)) > 1
    assert trials_parallel == trials_sequential  # same order, params, rounds and scores
    assert side_by_side.params == one_by_one.params
    # The rounds early stopping chose travel back from the workers with the winner.
    assert not side_by_side.params.early_stopping
    assert 1 <= side_by_side.params.max_iter <= 30


def test_the_baseline_fits_on_the_workers_equal_fits_in_this_process():
    """The two baseline tasks added to the search: the train-only fit's validation scores and
    the refit on train + validation, as the pipeline fitted them after the search."""
    from mlops_assets.training.estimators import build_estimator, tune_with_baseline

    features = ["lifetime_value_usd", "order_count_30d", "plan"]
    train, validation = _split(1, 2000), _split(2, 600)
    config = CONFIG.model_copy(update={"params": CONFIG.params.model_copy(update={"max_iter": 30})})
    plain, plain_trials = tune(config, train, validation, features)
    for workers in (1, 2):
        workers_config = config.model_copy(
            update={"tuning": config.tuning.model_copy(update={"workers": workers})}
        )
        search = tune_with_baseline(workers_config, train, validation, features)
        tuned, trials, base = search.tuned, search.trials, search.baseline
        assert len(search.validation_scores) == len(validation)  # the winner's, for `auto`
        assert (tuned.params, trials) == (plain.params, plain_trials)  # the search is unchanged

        X_train, X_val = train[features], validation[features]
        direct = build_estimator(config, X_train, "baseline").fit(X_train, train[CONFIG.label])
        np.testing.assert_allclose(
            base.validation_scores, direct.predict_proba(X_val)[:, 1], rtol=1e-6
        )
        full = pd.concat([train, validation])
        refit = build_estimator(config, full[features], "baseline")
        refit.fit(full[features], full[CONFIG.label])
        np.testing.assert_allclose(base.refit[-1].coef_, refit[-1].coef_, rtol=1e-6)
        assert base.refit.predict_proba(X_val).shape == (len(X_val), 2)


# A KFP step started under Dagster or a background shell inherits SIGTERM and SIGINT ignored; the
# tuning pool must still finish and leave no worker behind, round after round.
IGNORED_SIGNALS_SCRIPT = """
import json, multiprocessing, signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
from mlops_assets.training.estimators import _worker_signals
from tests.training.test_tuning import _tune
for _ in range(4):
    _tune(2)
_worker_signals()  # what each worker runs first
print(json.dumps({
    "children": len(multiprocessing.active_children()),
    "term_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
}))
"""


def test_tuning_workers_end_cleanly_when_stop_signals_are_ignored():
    import json
    import subprocess
    import sys

    from mlops_assets.settings import PROJECT_ROOT

    done = subprocess.run(
        [sys.executable, "-c", IGNORED_SIGNALS_SCRIPT],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # generous; a pool that hangs on its teardown never returns
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"children": 0, "term_default": True}


# Run in a fresh interpreter: scikit-learn's OpenMP must not be loaded before tune() runs (the
# test process has loaded it long before). Each worker reports its thread pools mid-trial.
THREADS_SCRIPT = """
import json
from mlops_assets.training import estimators

def report_threads(config, X_train, y_train, X_val, y_val, params):
    from threadpoolctl import threadpool_info
    import sklearn.ensemble  # what a real trial imports
    pools = sorted({(i["internal_api"], i["num_threads"]) for i in threadpool_info()})
    return {"params": params.model_dump(), "validation_roc_auc": 0.5, "pools": pools}

estimators._trial = report_threads
from tests.training.test_tuning import _tune
_, trials = _tune(2)
print(json.dumps([t["pools"] for t in trials]))
"""


def test_tuning_workers_run_one_thread_each():
    """Two workers with an OpenMP thread per CPU each oversubscribe the CPUs (slower than tuning
    one candidate after the other): every library scikit-learn uses is limited to one thread."""
    import json
    import subprocess
    import sys

    from mlops_assets.settings import PROJECT_ROOT

    done = subprocess.run(
        [sys.executable, "-c", THREADS_SCRIPT],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    per_worker = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(per_worker) == len(CONFIG.tuning.candidates(CONFIG.params))
    for pools in per_worker:
        assert any(api == "openmp" for api, _ in pools), pools  # the fit's library is there
        assert all(threads == 1 for _, threads in pools), pools
