"""`mlops status` and `mlops serve` on an empty data folder: a clear answer, not a traceback."""

import os
import subprocess
import sys
from pathlib import Path

from mlops_assets.settings import PROJECT_ROOT


def _mlops(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "mlops"), *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "MLOPS_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_status_on_a_fresh_folder_says_nothing_is_deployed(tmp_path):
    proc = _mlops(tmp_path, "status")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "churn: none" in proc.stdout and "fraud: none" in proc.stdout
    assert "nothing deployed; no local server running" in proc.stdout
    assert "no monitoring results yet" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_unknown_model_is_a_clear_error(tmp_path):
    proc = _mlops(tmp_path, "status", "pricing")
    assert proc.returncode == 1
    assert "unknown model 'pricing'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_on_a_folder_without_features_says_what_to_build(tmp_path):
    """The server needs the feature service its model reads; before the lakehouse exists it says so
    and exits, instead of a traceback (and it never binds its port)."""
    from mlops_assets.testing import free_port

    proc = _mlops(tmp_path, "serve", "churn", "--port", str(free_port()))
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "has no feature service 'churn_v1'" in proc.stderr
    assert "build the lakehouse first" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "Uvicorn running" not in proc.stderr
