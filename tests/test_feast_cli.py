"""A Feast user's workflow in feature_repo/: `feast plan` with the committed embedded config."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

from mlops_assets.features.store import FEATURE_REPO


def test_feast_plan_runs_in_the_feature_repo(tmp_path):
    config = yaml.safe_load((FEATURE_REPO / "feature_store.yaml").read_text())
    # Same config, with the registry and online store in a scratch folder.
    config["registry"]["path"] = str(tmp_path / "registry.db")
    config["online_store"]["path"] = str(tmp_path / "online.db")
    local_yaml = tmp_path / "feature_store.yaml"
    local_yaml.write_text(yaml.safe_dump(config))
    feast = Path(sys.executable).parent / "feast"
    proc = subprocess.run(
        [str(feast), "-c", str(FEATURE_REPO), "-f", str(local_yaml), "plan"],
        cwd=FEATURE_REPO,
        env={**os.environ, "MLOPS_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Created feature service churn_v1" in proc.stdout
    assert "Created on demand feature view customer_recency" in proc.stdout
