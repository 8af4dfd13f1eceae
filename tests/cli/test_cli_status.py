"""`mlops status` on an empty data folder: a clear answer, not a traceback."""

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
    assert "churn: none" in proc.stdout
    assert "nothing deployed; no local server running" in proc.stdout
    assert "no monitoring results yet" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_unknown_model_is_a_clear_error(tmp_path):
    proc = _mlops(tmp_path, "status", "fraud")
    assert proc.returncode == 1
    assert "unknown model 'fraud'" in proc.stderr
    assert "Traceback" not in proc.stderr
