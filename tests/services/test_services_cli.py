"""`mlops services up | status | down` as a user types them: a SeaweedFS node in the data folder
(on free ports here), the machine's PostgreSQL and Redis checked, a service that is down reported
as such with exit code 1, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlops_assets.testing import free_port_offset
from tests.conftest import POSTGRES_HOST, POSTGRES_PORT, REDIS_HOST, REDIS_PORT, require_service

MLOPS = str(Path(sys.executable).parent / "mlops")


def _mlops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MLOPS, "services", *args], env=env, capture_output=True, text=True, timeout=180
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_services_up_status_down(tmp_path):
    require_service("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    data = tmp_path / "data"
    env = {
        **os.environ,
        "MLOPS_DATA_DIR": str(data),
        "MLOPS_SERVICES_PORT_OFFSET": str(free_port_offset()),
        "MLOPS_POSTGRES_URL": f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/postgres",
        "MLOPS_REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
    }
    try:
        up = _mlops(env, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((data / "services" / "seaweedfs.json").read_text())
        assert _alive(state["pid"]) and state["warehouse"] == "s3://mlops-lake/"
        for name in ("s3", "iceberg-rest", "postgresql", "redis"):
            assert any(line.split()[:2] == ["up", name] for line in up.stdout.splitlines()), name
        assert "PostgreSQL " in up.stdout and "Redis " in up.stdout

        again = _mlops(env, "up")  # already running: the same node
        assert again.returncode == 0 and f"pid {state['pid']}" in again.stdout

        broken = {**env, "MLOPS_POSTGRES_URL": "postgresql://postgres@127.0.0.1:1/none"}
        status = _mlops(broken, "status")
        assert status.returncode == 1 and "Traceback" not in status.stderr
        assert any(
            line.split()[:2] == ["DOWN", "postgresql"] for line in status.stdout.splitlines()
        )

        down = _mlops(env, "down")
        assert down.returncode == 0 and "SeaweedFS stopped" in down.stdout
        assert not _alive(state["pid"])
        after = _mlops(env, "status")
        assert after.returncode == 1
        assert any(line.split()[:2] == ["DOWN", "s3"] for line in after.stdout.splitlines())
        assert "not running" in after.stdout
        assert "was not running" in _mlops(env, "down").stdout
    finally:
        _mlops(env, "down")
