"""Private servers for the reliability tests, started and stopped by PID so a test may kill and
restart them at will: a Redis on a free port (nothing on disk), a PostgreSQL cluster in a scratch
folder (initdb, pg_ctl; run as the `postgres` user when the tests run as root, which initdb
refuses), the Dagster daemon on that cluster, the project's model server on a Feast store in
Redis. The machine's own Redis and PostgreSQL are never touched. A missing binary skips the test,
or fails it when CI=true."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlops_assets.processes import pid_alive, stop_process_group
from mlops_assets.testing import free_port
from tests.conftest import IN_CI
from tests.serving.serving_world import call

REDIS_SERVER = "/usr/bin/redis-server"
POSTGRES_BIN = Path("/usr/local/bin")


def require_binary(name: str, path: str | Path) -> str:
    """`path` if it is an executable; else skip (fail when CI=true)."""
    if os.access(path, os.X_OK):
        return str(path)
    message = f"{name} is not installed ({path} is missing)"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true makes the reliability tests mandatory")
    pytest.skip(message)


def wait_for_port(port: int, timeout: float, up: bool = True) -> None:
    """Until 127.0.0.1:`port` accepts connections (or, `up=False`, refuses them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if (sock.connect_ex(("127.0.0.1", port)) == 0) == up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} still {'closed' if up else 'open'} after {timeout:.0f}s")


def restore_default_signals() -> None:
    """For a child started from a shell's background job, where SIGINT (and, under Dagster,
    SIGTERM) arrive ignored: the child must stop when told to."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# -- Redis -----------------------------------------------------------------------------------------


def start_redis(port: int, log: Path) -> subprocess.Popen:
    """A Redis on 127.0.0.1:`port` that keeps nothing on disk, answering when this returns."""
    binary = require_binary("Redis", REDIS_SERVER)
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*command, "no", "--dir", str(log.parent)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=restore_default_signals,
        )
    try:
        wait_for_port(port, 20)
    except TimeoutError:
        kill(process)
        raise
    return process


def kill(process: subprocess.Popen) -> None:
    """SIGKILL to the process by its PID (a crash, not a shutdown), reaped."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(30)


# -- PostgreSQL ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """A private PostgreSQL cluster: data and socket in `folder`, TCP on 127.0.0.1:`port`."""

    folder: Path
    port: int
    user: str  # the OS user that owns and runs it

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    def pid(self) -> int | None:
        """The postmaster's PID, while it runs."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def run(self, *command: str, timeout: float = 120) -> None:
        """A PostgreSQL tool, as the cluster's owner."""
        as_owner = ["runuser", "-u", self.user, "--"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [*as_owner, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=restore_default_signals,
        )
        if done.returncode:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")

    def pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        pg_ctl = str(POSTGRES_BIN / "pg_ctl")
        self.run(
            pg_ctl, action, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", *extra
        )


@contextlib.contextmanager
def private_postgres(port: int) -> Iterator[Cluster]:
    """A new cluster (trust authentication, user `postgres`) running on `port`; stopped by its
    PID and deleted afterwards."""
    for tool in ("initdb", "pg_ctl"):
        require_binary(f"PostgreSQL ({tool})", POSTGRES_BIN / tool)
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(user)
        except KeyError:
            message = "no `postgres` user to run a private PostgreSQL as (initdb refuses root)"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
    # Beside /tmp, not under pytest's private (0700, root-only) folder: the owner must reach it.
    folder = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    if os.geteuid() == 0:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    cluster = Cluster(folder, port, user)
    try:
        initdb = str(POSTGRES_BIN / "initdb")
        cluster.run(initdb, "-D", str(cluster.data), "-A", "trust", "-U", "postgres", "--no-sync")
        cluster.pg_ctl("start")
        yield cluster
    finally:
        stop_postgres(cluster)
        shutil.rmtree(folder, ignore_errors=True)


def stop_postgres(cluster: Cluster, grace: float = 30.0) -> None:
    """A fast shutdown (SIGINT) of the postmaster by its PID; SIGKILL after `grace` seconds."""
    pid = cluster.pid()
    if pid is None:
        return
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    while pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)


# -- the Dagster daemon on PostgreSQL ----------------------------------------------------------------

# A code location with one job and a schedule every minute, running from the start.
DAGSTER_LOCATION = """\
import dagster as dg


@dg.op
def beat() -> int:
    return 1


@dg.job
def heartbeat():
    beat()


every_minute = dg.ScheduleDefinition(
    name="every_minute",
    job=heartbeat,
    cron_schedule="* * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
defs = dg.Definitions(jobs=[heartbeat], schedules=[every_minute])
"""


def dagster_home(folder: Path, cluster: Cluster) -> Path:
    """A Dagster instance on the cluster (run, event and schedule storage; the production
    instance's run coordinator, local run launcher) with the one-schedule code location."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    db = {"hostname": "127.0.0.1", "port": cluster.port, "username": "postgres"}
    config = {
        "telemetry": {"enabled": False},
        "storage": {"postgres": {"postgres_db": {**db, "db_name": "postgres"}}},
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"max_concurrent_runs": 2},
        },
    }
    (folder / "dagster.yaml").write_text(yaml.safe_dump(config))
    (folder / "location.py").write_text(DAGSTER_LOCATION)
    workspace = {
        "load_from": [
            {
                "python_file": {
                    "relative_path": "location.py",
                    "working_directory": str(folder),
                    "location_name": "reliability",
                }
            }
        ]
    }
    (folder / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    return folder


def start_daemon(home: Path) -> subprocess.Popen:
    """`dagster-daemon run` on the instance in `home`, in its own session."""
    daemon = Path(sys.executable).parent / "dagster-daemon"
    with (home / "daemon.log").open("ab") as log:
        return subprocess.Popen(
            [str(daemon), "run", "-w", str(home / "workspace.yaml")],
            cwd=home,
            env={**os.environ, "DAGSTER_HOME": str(home)},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=restore_default_signals,
        )


def successful_tick(instance: Any, after: float) -> tuple[Any, list[Any]] | None:
    """The first schedule tick after `after` (epoch seconds) that launched runs which all
    succeeded: (tick, runs); None if there is none yet."""
    from dagster import DagsterRunStatus
    from dagster._core.scheduler.instigation import TickStatus

    for state in instance.all_instigator_state():
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after)
        for tick in sorted(ticks, key=lambda t: t.timestamp):
            if tick.status != TickStatus.SUCCESS or not tick.run_ids:
                continue
            runs = [instance.get_run_by_id(run_id) for run_id in tick.run_ids]
            if all(run is not None and run.status == DagsterRunStatus.SUCCESS for run in runs):
                return tick, runs
    return None


# -- the model server on a Feast store in Redis ------------------------------------------------------

FEAST_ON_REDIS = """\
# feature_store.prod.yaml's online store (Redis), a file registry and the embedded offline store
project: lakehouse_mlops
provider: local
registry: {{registry_type: file, path: "{registry}"}}
online_store: {{type: redis, connection_string: "127.0.0.1:{port}"}}
offline_store: {{type: duckdb}}
entity_key_serialization_version: 3
"""
# The project's model server (`mlops serve`'s library call) with the Feast store on Redis.
SERVER = """\
import json, sys
from pathlib import Path
import dagster as dg
from mlops_assets.model_config import model_configs
from mlops_assets.resources import (
    ModelRegistryResource, ProductionFeatureStore, SqlCatalogResource)
from mlops_assets.serving.server import serve
a = json.loads(sys.argv[1])
resources = {
    "lakehouse": SqlCatalogResource(folder=a["iceberg"]),
    "feature_store": ProductionFeatureStore(config_path=a["feast"]),
    "model_registry": ModelRegistryResource(**a["registry"]),
}
with dg.build_resources(resources) as res:
    config = model_configs()["churn"]
    sys.exit(serve(res, Path(a["data"]), config, "127.0.0.1", a["port"], a["version"]))
"""


def feast_on_redis(folder: Path, port: int) -> Path:
    """A Feast config over feature_repo/ with its online store in the Redis on `port`."""
    path = folder / "feature_store.yaml"
    path.write_text(FEAST_ON_REDIS.format(registry=folder / "registry.db", port=port))
    return path


def start_model_server(settings: Any, res: Any, feast: Path, version: str) -> tuple[Any, str]:
    """The model server on a free port, serving `version` with features from `feast`; ready."""
    port, registry = free_port(), res.model_registry
    args = {
        "iceberg": str(settings.data_dir / "iceberg"),
        "feast": str(feast),
        "registry": {
            "tracking_uri": registry.tracking_uri,
            "artifact_root": registry.artifact_root,
            "decisions_url": registry.decisions_url,
        },
        "data": str(settings.data_dir),
        "port": port,
        "version": version,
    }
    with (settings.data_dir / "server.log").open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, json.dumps(args)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=restore_default_signals,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert server.poll() is None, (settings.data_dir / "server.log").read_text()[-3000:]
        with contextlib.suppress(OSError):
            if call(f"{url}/v2/models/churn/ready")[0] == 200:
                return server, url
        time.sleep(0.3)
    stop_process_group(server)
    raise TimeoutError("the model server was not ready after 180s")
