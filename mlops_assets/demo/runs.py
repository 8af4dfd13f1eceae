"""The demo's Dagster side: jobs run in this process on the local instance (with their progress
shown on the stage's bar), the daemon that evaluates sensors and schedules, and waiting for the
runs the daemon's sensors launch."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_assets.defs.tags import TRIGGER_TAG
from mlops_assets.settings import PROJECT_ROOT

if TYPE_CHECKING:
    import dagster as dg

    from mlops_assets.demo.console import Stage
    from mlops_assets.settings import Settings

FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_wakeup: dict[str, int] = {}  # the read end of the signal wake-up pipe, once installed


def watch_interrupts() -> None:
    """Note every Ctrl-C (and SIGTERM) at the C level, whoever's Python handler is installed:
    Dagster's in-process execution captures SIGINT in places and can drop it, so the demo checks
    after each run whether one arrived. Main thread only, once per process."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    _wakeup["read"] = read


def unwatch_interrupts() -> None:
    signal.set_wakeup_fd(-1)
    read = _wakeup.pop("read", None)
    if read is not None:
        os.close(read)


def _interrupt_arrived() -> bool:
    if "read" not in _wakeup:
        return False
    try:
        received = os.read(_wakeup["read"], 1024)
    except BlockingIOError:
        return False
    return any(number in _STOP_SIGNALS for number in received)


class RunFailed(RuntimeError):
    pass


def other_models_keys(job: str, model: str, models: list[str]) -> list[list[str]]:
    """The asset keys of `job` that belong to models other than `model` (per-model keys carry
    the model's name second: predictions/<model>/daily), to leave out of its run."""
    from mlops_assets.definitions import load

    others = set(models) - {model}
    keys = load().resolve_job_def(job).asset_layer.selected_asset_keys
    return [list(k.path) for k in keys if len(k.path) > 1 and k.path[1] in others]


def run_job(
    instance: dg.DagsterInstance,
    name: str,
    stage: Stage,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
    exclude: list[list[str]] | None = None,
) -> str:
    """Run a job of the code location in this process; the stage's bar follows its steps."""
    import dagster as dg

    from mlops_assets.definitions import load

    job = load().resolve_job_def(name)
    keys = list(job.asset_layer.selected_asset_keys)
    if exclude:
        skip = {dg.AssetKey(k) for k in exclude}
        keys = [k for k in keys if k not in skip]
    run_id = str(uuid.uuid4())  # known before the run starts, so the watcher can follow it
    stop = threading.Event()
    watcher = threading.Thread(
        target=_follow_steps, args=(instance, run_id, stage, stop), daemon=True
    )
    watcher.start()
    try:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=keys if exclude else None,
            run_id=run_id,
            tags={TRIGGER_TAG: "mlops demo", **(tags or {})},
            run_config={
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                **(run_config or {}),
            },
            raise_on_error=False,
        )
    finally:
        stop.set()
        watcher.join(2)
    if _interrupt_arrived():  # a Ctrl-C the run swallowed is still Ctrl-C
        raise KeyboardInterrupt
    if not result.success:
        failed = [e for e in result.all_events if e.is_step_failure]
        # Dagster turns Ctrl-C inside a step (or while it sets up resources) into a failed,
        # interrupted run: it is still Ctrl-C.
        if _interrupted(result) or (
            instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
        ):
            raise KeyboardInterrupt
        why = failed[0].step_failure_data.error.message.strip() if failed else "run failed"
        steps = ", ".join(e.step_key for e in failed)
        raise RunFailed(f"run {run_id} of {name} failed at {steps or '?'}: {why.splitlines()[-1]}")
    return run_id


def _interrupted(result: Any) -> bool:
    """Whether a step or the run itself failed with Dagster's interrupt error."""
    for event in result.all_events:
        if event.is_step_failure or event.is_run_failure:
            error = getattr(event.event_specific_data, "error", None)
            if error is not None and "Interrupt" in (error.cls_name or ""):
                return True
    return False


def _follow_steps(instance: Any, run_id: str, stage: Stage, stop: threading.Event) -> None:
    """Poll the run's step events and move the bar: completed steps of the planned ones."""
    import dagster as dg

    planned: set[str] = set()
    while not stop.wait(0.5):
        try:
            records = instance.get_records_for_run(
                run_id,
                of_type={
                    dg.DagsterEventType.STEP_START,
                    dg.DagsterEventType.STEP_SUCCESS,
                    dg.DagsterEventType.STEP_SKIPPED,
                    dg.DagsterEventType.STEP_FAILURE,
                },
            ).records
        except Exception:  # the run is not in storage yet
            continue
        done, running = set(), []
        for record in records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            planned.add(event.step_key)
            if event.event_type == dg.DagsterEventType.STEP_START:
                running.append(event.step_key)
            else:
                done.add(event.step_key)
        current = [s for s in running if s not in done]
        stage.update(
            completed=len(done),
            total=max(len(planned), len(done) + 1),
            detail=(current[-1] if current else "").replace("__", "/")[:40],
        )


# What the later stages import, loaded beside the lakehouse stage.
LATER_IMPORTS = ("skops.io", "sklearn.ensemble", "mlflow.sklearn", "pyiceberg.table", "kfp.local")


# -- the instance and the daemon -------------------------------------------------------------------


# A range run (one run for many days) records one "planned" event per asset instead of one per
# asset and day: thousands of SQLite writes less for the demo's 240-day build. `make dev` sets it too.
PLANNED_EVENTS = {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true"}


def ensure_dagster_home(settings: Settings) -> Path:
    """Point Dagster at the project's local instance (SQLite) unless DAGSTER_HOME is set; the
    same instance `make dev` opens."""
    from mlops_assets.instance_storage import install_local_instance, install_services_instance

    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    if settings.on_services:
        install_services_instance(home, settings)
    else:
        install_local_instance(home)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def start_daemon(home: Path, log_path: Path) -> subprocess.Popen:
    """The Dagster daemon (what `dagster dev` runs beside the UI): sensors and schedules. Its own
    session, so stopping its process group also stops the runs it launched."""
    log = log_path.open("ab")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-daemon"),
            "run",
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_daemon(process: subprocess.Popen) -> None:
    """The daemon and the runs its code server launched (they may outlive it in its group)."""
    from mlops_assets.processes import stop_process_group

    stop_process_group(process)


def stop_children() -> None:
    """Terminate every process this one started that is still running (an interrupted KFP step,
    a run worker); used when the demo is interrupted."""
    import psutil

    children = [
        child
        for child in psutil.Process().children(recursive=True)
        # Python's resource trackers end with their parent; killing one early makes the parent
        # start another one at exit, which then prints a traceback about what it never saw.
        if "resource_tracker" not in " ".join(_cmdline(child))
    ]
    gone = (ProcessLookupError, PermissionError, psutil.NoSuchProcess)
    for child in children:
        with contextlib.suppress(*gone):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        with contextlib.suppress(*gone):
            child.kill()


def _cmdline(process: Any) -> list[str]:
    import psutil

    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def wait_for_run(
    instance: Any,
    tag: tuple[str, str],
    since: float,
    timeout: float,
    stage: Stage,
    job: str | None = None,
) -> Any:
    """The first run with `tag` created after `since` (epoch s), once it has finished."""
    import dagster as dg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = instance.get_run_records(filters=dg.RunsFilter(tags={tag[0]: tag[1]}), limit=5)
        records = [
            r
            for r in records
            if r.create_timestamp.timestamp() >= since
            and (job is None or r.dagster_run.job_name == job)
        ]
        if records:
            record = records[-1]
            status = record.dagster_run.status.value
            stage.update(detail=f"{record.dagster_run.job_name} {status.lower()}")
            if status in FINISHED:
                return record
        time.sleep(0.5)
    raise TimeoutError(f"no finished run tagged {tag[0]}={tag[1]} within {timeout:.0f}s")


def last_sensor_tick(instance: Any, sensor_name: str, after: float) -> Any | None:
    """The newest completed tick of a sensor that started after `after` (epoch s), if any."""
    for state in instance.all_instigator_state():
        if state.name != sensor_name:
            continue
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=5)
        for tick in ticks:
            if tick.timestamp >= after and tick.status.value != "STARTED":
                return tick
    return None
