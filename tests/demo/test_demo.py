"""`mlops demo`, the main command, as a user runs it: a world without drift tells its story in a
few lines and ends with the champion kept; Ctrl-C in the middle stops everything it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mlops_assets.settings import PROJECT_ROOT
from mlops_assets.testing import free_port

pytestmark = pytest.mark.slow
MLOPS = str(Path(sys.executable).parent / "mlops")


def _env(root: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "MLOPS_DATA_DIR": str(root / "data"),
        "DAGSTER_HOME": str(root / "data" / "dagster_home"),
        "MLOPS_SERVING_PORT": str(port),
    }


def _left_behind(root: Path) -> list[str]:
    """Processes still running with this demo's data folder in their environment."""
    marker = f"MLOPS_DATA_DIR={root / 'data'}"
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            env = process.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if f"MLOPS_DATA_DIR={env.get('MLOPS_DATA_DIR')}" == marker:
            found.append(" ".join(process.info["cmdline"] or [])[:120])
    return found


def _nothing_left_behind(root: Path, grace: float = 60) -> bool:
    """No process of this demo is running once `grace` seconds have passed. (Python's own
    multiprocessing resource tracker of an exited process ends by itself, a moment after it.)"""
    deadline = time.monotonic() + grace
    while _left_behind(root) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = _left_behind(root)
    assert not left, left
    return True


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_a_world_without_drift_ends_quietly_with_the_champion_kept(tmp_path):
    port = free_port()
    proc = subprocess.run(
        [MLOPS, "demo", "--no-drift"],  # the default scale, as a user runs it
        cwd=PROJECT_ROOT,
        env=_env(tmp_path, port),
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) <= 60, proc.stdout
    assert "no degradation; champion kept" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    log = Path(lines[-1].removeprefix("log: "))
    assert log.is_file() and log.is_relative_to(tmp_path / "data" / "logs")
    assert _nothing_left_behind(tmp_path)
    assert _port_free(port)


def test_drift_in_fraud_s_world_retrains_fraud_and_leaves_churn_alone(tmp_path):
    """Models are isolated: a new fraud pattern (and no customer drift) degrades fraud's
    monitors and launches fraud's retraining; churn's sensor stays quiet and its champion, its
    only version, keeps serving."""
    port = free_port()
    env = _env(tmp_path, port)
    proc = subprocess.run(
        [MLOPS, "demo", "--no-drift", "--days", "300", "--fraud-drift-day", "160"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    timeline = proc.stdout[proc.stdout.index("timeline (") :]
    assert "a new fraud pattern from 2025-06-10" in timeline
    assert " fraud retraining_launched" in timeline and " churn retraining_launched" not in timeline
    assert " churn no_degradation" in timeline and " fraud no_degradation" not in timeline
    status = subprocess.run(
        [MLOPS, "status", "churn"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert status.returncode == 0, status.stderr[-2000:]
    assert "[registry] churn: champion=v1\n" in status.stdout, status.stdout
    assert _nothing_left_behind(tmp_path)


@pytest.mark.parametrize(
    "stage",
    [
        # MLflow's storage and the daemon are still starting beside the lakehouse run.
        "lakehouse",
        "scoring",  # the daemon and the model server are up by now
    ],
)
def test_ctrl_c_in_the_middle_stops_the_daemon_the_server_and_every_step(tmp_path, stage):
    port = free_port()
    proc = subprocess.Popen(
        [MLOPS, "demo", "--customers", "3000"],
        cwd=PROJECT_ROOT,
        env=_env(tmp_path, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # Started as a shell's background job would be (SIGINT ignored): the demo still stops.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    logs = tmp_path / "data" / "logs"
    deadline = time.monotonic() + 900  # generous: only the moment matters, not the speed
    while time.monotonic() < deadline and proc.poll() is None:
        texts = [p.read_text(errors="replace") for p in logs.glob("demo-*.log")]
        if any(f"stage {stage}" in text for text in texts):
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out + err
    assert "interrupted" in err
    assert "Traceback" not in out + err
    assert _nothing_left_behind(tmp_path)
    assert _port_free(port)


def test_a_ctrl_c_that_dagster_swallows_is_still_noticed():
    """Dagster's in-process execution captures SIGINT in places and can drop it (the Ctrl-C test
    above once ran to the end under load); the demo's C-level watch still sees it."""
    from dagster._utils.interrupts import capture_interrupts

    from mlops_assets.demo import runs

    runs.watch_interrupts()
    try:
        assert not runs._interrupt_arrived()
        with capture_interrupts():  # what Dagster wraps around parts of a run
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)  # the handler runs; Dagster only sets a flag it later resets
        assert runs._interrupt_arrived()
        assert not runs._interrupt_arrived()  # read once
    finally:
        runs.unwatch_interrupts()
