"""The local model server's lifecycle: a separate process bound to 127.0.0.1, started with the
spec to serve, told to load a new one through KServe's repository endpoint, stopped with SIGTERM
(it drains requests and flushes the inference log). Its state (pid, port) is in
<data dir>/serving/<model>/server.json."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mlops_assets.model_config import ModelConfig
from mlops_assets.processes import pid_alive, stop_pid_group
from mlops_assets.serving.deployment import DeploymentError
from mlops_assets.settings import PROJECT_ROOT


def serving_dir(data_dir: str | Path, model: str) -> Path:
    folder = Path(data_dir) / "serving" / model
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _state_path(data_dir: str | Path, model: str) -> Path:
    return serving_dir(data_dir, model) / "server.json"


def endpoint(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _http(method: str, url: str, timeout: float = 5.0) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def server_state(data_dir: str | Path, model: str) -> dict[str, Any] | None:
    """The running local server (pid, port, endpoint) if it answers its liveness probe."""
    path = _state_path(data_dir, model)
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    if not pid_alive(state["pid"]):
        return None
    try:
        status, _ = _http("GET", f"{state['endpoint']}/v2/health/live", timeout=2)
    except OSError:
        return None
    return state if status == 200 else None


def _spawn(data_dir: str | Path, port: int, config: ModelConfig, *extra: str) -> dict[str, Any]:
    """The server process for `config` (`mlops serve`), in its own process group; its state."""
    folder = serving_dir(data_dir, config.name)
    log_path = folder / "server.log"
    env = {**os.environ, "MLOPS_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-m", "mlops_assets.cli", "serve", config.name, "--port", str(port)]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [*command, *extra],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stoppable as a unit
        )
    return {
        "pid": process.pid,
        "port": port,
        "endpoint": endpoint(port),
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
        "log": str(log_path),
    }


def start_server(
    data_dir: str | Path, port: int, config: ModelConfig, timeout: float | None = None
) -> dict:
    """Start the model server for `config` as a separate process and wait until its model is ready."""
    state = _spawn(data_dir, port, config)
    log_path = Path(state["log"])
    deadline = time.monotonic() + (timeout or config.serving.ready_timeout_seconds)
    ready_url = f"{state['endpoint']}/v2/models/{config.name}/ready"
    while time.monotonic() < deadline:
        if not pid_alive(state["pid"]):
            raise DeploymentError("model server exited before it was ready:\n" + _tail(log_path))
        try:
            status, _ = _http("GET", ready_url, timeout=2)
            if status == 200:
                _state_path(data_dir, config.name).write_text(json.dumps(state, indent=2))
                return state
        except OSError:
            pass
        time.sleep(0.2)
    stop_pid_group(state["pid"])
    raise DeploymentError(f"model server not ready after the timeout:\n{_tail(log_path)}")


def start_standby(data_dir: str | Path, port: int, config: ModelConfig) -> dict[str, Any]:
    """Start the server for `config` with no model, without waiting: its imports (~10 s) overlap
    whatever runs before the first deployment, which then only loads the model. A server that
    already runs for `config` is left as it is."""
    path = _state_path(data_dir, config.name)
    if path.exists():
        state = json.loads(path.read_text())
        if pid_alive(state["pid"]):
            return state
    state = {**_spawn(data_dir, port, config, "--standby"), "standby": True}
    path.write_text(json.dumps(state, indent=2))
    return state


def stop_server(data_dir: str | Path, model: str, timeout: float = 60.0) -> bool:
    """Stop the local server (SIGTERM: it drains requests and flushes the inference log)."""
    path = _state_path(data_dir, model)
    if not path.exists():
        return False
    state = json.loads(path.read_text())
    stopped = stop_pid_group(state["pid"], timeout) if pid_alive(state["pid"]) else False
    path.unlink(missing_ok=True)
    return stopped


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def deploy_local(data_dir: str | Path, port: int, config: ModelConfig) -> dict[str, Any]:
    """Serve the model's pending spec on the local server: start one, or have the running one
    (or the one in standby) load it (it reads the spec from the deployments table). Raises
    DeploymentError if the new versions fail their readiness check; the old ones keep serving."""
    timeout = config.serving.ready_timeout_seconds
    state = _live_state(data_dir, config.name, timeout)
    if state is None:
        stop_server(data_dir, config.name)  # a stale state file or a hung process
        return start_server(data_dir, port, config)
    url = f"{state['endpoint']}/v2/repository/models/{config.name}/load"
    status, body = _http("POST", url, timeout=timeout)
    if status != 200:
        raise DeploymentError(
            f"the new deployment failed its readiness check (HTTP {status}): "
            f"{_error_message(body)}; the previous versions keep serving"
        )
    if state.pop("standby", False):
        _state_path(data_dir, config.name).write_text(json.dumps(state, indent=2))
    return state


def _live_state(data_dir: str | Path, model: str, timeout: float) -> dict[str, Any] | None:
    """The running server's state once it answers its liveness probe; a server still starting
    (a standby one importing) is given `timeout` seconds. None: no server, or a hung one."""
    path = _state_path(data_dir, model)
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    deadline = time.monotonic() + (timeout if state.get("standby") else 0)
    while pid_alive(state["pid"]):
        try:
            if _http("GET", f"{state['endpoint']}/v2/health/live", timeout=2)[0] == 200:
                return state
        except OSError:
            pass
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)
    return None


def _error_message(body: str) -> str:
    try:
        return str(json.loads(body).get("error", body))
    except ValueError:
        return body
