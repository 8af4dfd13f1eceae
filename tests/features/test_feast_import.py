"""Feast imported after mlops_assets skips typeguard's import-time instrumentation (3 of the 5 s
`import feast` takes here), restores typeguard afterwards, and keeps it on request; Feast's own
CLI (its own process) is untouched: tests/cli/test_feast_cli.py runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, sys
first = sys.argv[1]
if first == "mlops_assets":
    import mlops_assets
import feast
from feast import Entity, FeatureView
import typeguard
def instrumented(function):
    return "TypeCheckMemo" in function.__code__.co_names  # what the instrumentation adds
print(json.dumps({
    "entity": instrumented(Entity.__init__),
    "feature_view": instrumented(FeatureView.__init__),
    "typechecked_restored": typeguard.typechecked is typeguard._decorators.typechecked,
    "entity_works": Entity(name="customer", join_keys=["customer_id"]).join_key == "customer_id",
}))
"""


def _probe(first: str, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, first],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_feast_after_mlops_assets_is_not_instrumented_and_typeguard_is_restored():
    found = _probe("mlops_assets")
    assert found == {
        "entity": False,
        "feature_view": False,
        "typechecked_restored": True,
        "entity_works": True,
    }


def test_plain_feast_and_the_opt_out_keep_typeguards_checks():
    assert _probe("feast")["entity"] is True  # what the `feast` CLI runs
    kept = _probe("mlops_assets", MLOPS_FEAST_TYPECHECKS="1")
    assert kept["entity"] is True and kept["feature_view"] is True
