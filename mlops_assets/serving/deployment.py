"""What is deployed, and the local model server's lifecycle.

A `DeploymentSpec` names the champion version, an optional challenger and the challenger's traffic
share. Locally the spec lives in data/serving/<model>/deployment.json and the model server (a
separate process bound to 127.0.0.1) serves it; a new spec is first written as `pending`, the server
loads it through KServe's repository endpoint, and it becomes the active spec only once the new
versions pass their readiness check; otherwise the old versions keep serving. In prod the same spec
is rendered into a KServe InferenceService (see `inference_service.py`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mlops_assets.model_config import ModelConfig
from mlops_assets.settings import PROJECT_ROOT, Settings


class DeploymentError(RuntimeError):
    """A deployment did not become ready; what served before still serves."""


class DeploymentSpec(BaseModel):
    model: str
    champion_version: str
    challenger_version: str | None = None
    canary_percent: int = Field(0, ge=0, le=100)
    actor: str = "unknown"
    reason: str = ""
    updated_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def split(self) -> dict[str, int]:
        """Traffic share per version."""
        if not self.challenger_version or self.canary_percent == 0:
            return {self.champion_version: 100}
        return {
            self.champion_version: 100 - self.canary_percent,
            self.challenger_version: self.canary_percent,
        }


def challenger_share(customer_id: int, salt: str) -> int:
    """A stable number in [0, 100) per customer: the canary split is sticky per customer (salted with
    the challenger version, so each canary samples different customers)."""
    return zlib.crc32(f"{salt}:{customer_id}".encode()) % 100


def serving_dir(settings: Settings, model: str) -> Path:
    folder = settings.data_dir / "serving" / model
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def spec_path(settings: Settings, model: str, pending: bool = False) -> Path:
    return serving_dir(settings, model) / (
        "deployment.pending.json" if pending else "deployment.json"
    )


def read_spec(settings: Settings, model: str, pending: bool = False) -> DeploymentSpec | None:
    path = spec_path(settings, model, pending)
    if not path.exists():
        return None
    return DeploymentSpec.model_validate_json(path.read_text())


def write_spec(path: Path, spec: DeploymentSpec) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(spec.model_dump_json(indent=2))
    os.replace(tmp, path)


def spec_to_serve(settings: Settings, model: str) -> DeploymentSpec | None:
    """What the server should load: the pending spec while a deployment is in progress."""
    return read_spec(settings, model, pending=True) or read_spec(settings, model)


# -- the local model server process ---------------------------------------------------------------


def _state_path(settings: Settings, model: str) -> Path:
    return serving_dir(settings, model) / "server.json"


def endpoint(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _http(method: str, url: str, timeout: float = 5.0) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie (exited child not yet reaped) is not serving.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def server_state(settings: Settings, model: str) -> dict[str, Any] | None:
    """The running local server (pid, port, endpoint) if it answers its liveness probe."""
    path = _state_path(settings, model)
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    if not _alive(state["pid"]):
        return None
    try:
        status, _ = _http("GET", f"{state['endpoint']}/v2/health/live", timeout=2)
    except OSError:
        return None
    return state if status == 200 else None


def start_server(settings: Settings, config: ModelConfig, timeout: float | None = None) -> dict:
    """Start the model server for `config` as a separate process and wait until its model is ready."""
    port = settings.serving_port or config.serving.port
    folder = serving_dir(settings, config.name)
    log_path = folder / "server.log"
    env = {**os.environ, "MLOPS_DATA_DIR": str(settings.data_dir), "MLOPS_ENV": settings.env.value}
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlops_assets.serving.server",
                "--model",
                config.name,
                "--port",
                str(port),
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stoppable as a unit
        )
    state = {
        "pid": process.pid,
        "port": port,
        "endpoint": endpoint(port),
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
        "log": str(log_path),
    }
    deadline = time.monotonic() + (timeout or config.serving.ready_timeout_seconds)
    ready_url = f"{state['endpoint']}/v2/models/{config.name}/ready"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DeploymentError(
                f"model server exited with code {process.returncode} before it was ready:\n"
                + _tail(log_path)
            )
        try:
            status, _ = _http("GET", ready_url, timeout=2)
            if status == 200:
                _state_path(settings, config.name).write_text(json.dumps(state, indent=2))
                return state
        except OSError:
            pass
        time.sleep(0.2)
    _stop_pid(process.pid)
    raise DeploymentError(f"model server not ready after the timeout:\n{_tail(log_path)}")


def stop_server(settings: Settings, model: str, timeout: float = 60.0) -> bool:
    """Stop the local server (SIGTERM: it drains requests and flushes the inference log)."""
    path = _state_path(settings, model)
    if not path.exists():
        return False
    state = json.loads(path.read_text())
    stopped = _stop_pid(state["pid"], timeout) if _alive(state["pid"]) else False
    path.unlink(missing_ok=True)
    return stopped


def _stop_pid(pid: int, timeout: float = 60.0) -> bool:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # Reap it if it is our child; otherwise just poll.
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            if not _alive(pid):
                return True
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    return True


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def deploy_local(settings: Settings, config: ModelConfig, spec: DeploymentSpec) -> dict[str, Any]:
    """Serve `spec` on the local server: start it, or have the running one load the new spec.
    On a failed readiness check the pending spec is dropped and the old one keeps serving."""
    pending = spec_path(settings, config.name, pending=True)
    write_spec(pending, spec)
    try:
        state = server_state(settings, config.name)
        if state is None:
            stop_server(settings, config.name)  # a stale state file or a hung process
            state = start_server(settings, config)
        else:
            url = f"{state['endpoint']}/v2/repository/models/{config.name}/load"
            status, body = _http("POST", url, timeout=config.serving.ready_timeout_seconds)
            if status != 200:
                raise DeploymentError(
                    f"the new deployment failed its readiness check (HTTP {status}): "
                    f"{_error_message(body)}; the previous versions keep serving"
                )
        os.replace(pending, spec_path(settings, config.name))
        return state
    finally:
        pending.unlink(missing_ok=True)


def _error_message(body: str) -> str:
    try:
        return str(json.loads(body).get("error", body))
    except ValueError:
        return body
