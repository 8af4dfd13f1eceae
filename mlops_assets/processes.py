"""Processes: stopping one started in its own session (`start_new_session=True`) together with
everything it started (the demo's daemon, servers tests start the way users do), whether this
process holds its Popen or only its pid (a state file's), and a block with variables in this
process's environment (inherited by what it starts); imports warmed beside a wait."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def environment(variables: dict[str, str | None]) -> Iterator[None]:
    """`variables` set (None: unset) in this process's environment for the block only, so a
    long-lived process (a code server, a test session) keeps nothing of one block for the next."""
    saved = {name: os.environ.get(name) for name in variables}
    try:
        _apply(variables)
        yield
    finally:
        _apply(saved)


def _apply(variables: dict[str, str | None]) -> None:
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def stop_process_group(process: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM to the group, SIGKILL if it has not exited after `grace` seconds; then SIGKILL to
    whatever is left of the group (children that outlived their leader)."""
    gone = (ProcessLookupError, PermissionError)
    if process.poll() is None:
        with contextlib.suppress(*gone):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(*gone):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    with contextlib.suppress(*gone):
        os.killpg(process.pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (an exited child not yet reaped, a zombie, does not)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def stop_pid_group(pid: int, grace: float = 60.0) -> bool:
    """SIGTERM to the group `pid` leads, SIGKILL if it still runs after `grace` seconds (reaping it
    when it is this process's child). False if no such group was running."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    return True


# How much lower than normal a background warm-up runs (Linux niceness of its thread alone).
WARM_UP_NICENESS = 10


def import_in_background(*modules: str, low_priority: bool = False) -> threading.Thread:
    """Import what a later step of this process needs on a daemon thread, while the current one
    mostly waits on a subprocess (a KFP pipeline, dbt): skops alone walks all of scikit-learn
    (2-3 s). An import that fails here fails again, with its traceback, where it is used.

    `low_priority`: the thread runs niced (the process's other threads keep their priority), so it
    takes the CPUs the rest of the machine leaves idle: a warm-up beside the tuning workers, at
    normal priority, took CPU from them and made the training longer than it saved later. Only
    for a process whose main thread will not need these modules while the machine is busy (it
    would wait on the niced thread's import lock)."""

    def run() -> None:
        import importlib

        if low_priority:
            with contextlib.suppress(AttributeError, OSError):  # not Linux: normal priority
                me = threading.get_native_id()
                niceness = os.getpriority(os.PRIO_PROCESS, me) + WARM_UP_NICENESS
                os.setpriority(os.PRIO_PROCESS, me, min(niceness, 19))
        for name in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    thread = threading.Thread(target=run, name="import-in-background", daemon=True)
    thread.start()
    return thread
