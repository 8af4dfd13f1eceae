"""The local model server's lifecycle: one process per data folder hosting every configured model
(`mlops serve`), bound to 127.0.0.1, started by the first deployment, told to load a model's new
spec through KServe's repository endpoint (the other models keep serving), stopped with SIGTERM
(it drains requests and flushes the inference logs). Its state (pid, port, endpoint, log) is in
<data dir>/serving/server.json; its port is the deployer's (MLOPS_SERVING_PORT), else the model
config's serving.port (8085 unless a config says otherwise)."""

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

# How long a (re)load may take when the model config gives no readiness timeout.
DEFAULT_READY_TIMEOUT = 120.0


def serving_dir(data_dir: str | Path, model: str | None = None) -> Path:
    """<data dir>/serving (the server's state and log), or a model's folder inside it."""
    folder = Path(data_dir) / "serving"
    if model is not None:
        folder = folder / model
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _state_path(data_dir: str | Path) -> Path:
    return serving_dir(data_dir) / "server.json"


def _read_state(data_dir: str | Path) -> dict[str, Any] | None:
    path = _state_path(data_dir)
    return json.loads(path.read_text()) if path.exists() else None


def _write_state(data_dir: str | Path, state: dict[str, Any]) -> None:
    _state_path(data_dir).write_text(json.dumps(state, indent=2))


def endpoint(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _http(method: str, url: str, timeout: float = 5.0) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _live(state: dict[str, Any]) -> bool:
    try:
        return _http("GET", f"{state['endpoint']}/v2/health/live", timeout=2)[0] == 200
    except OSError:
        return False


def loaded_models(state: dict[str, Any]) -> list[str]:
    """The models the running server has loaded (KServe's V1 model list)."""
    try:
        status, body = _http("GET", f"{state['endpoint']}/v1/models", timeout=5)
    except OSError:
        return []
    return list(json.loads(body).get("models", [])) if status == 200 else []


def server_state(data_dir: str | Path, model: str | None = None) -> dict[str, Any] | None:
    """The running local server (pid, port, endpoint) if it answers its liveness probe; with
    `model`, also whether that model is loaded (`model_loaded`)."""
    state = _read_state(data_dir)
    if state is None or not pid_alive(state["pid"]) or not _live(state):
        return None
    if model is not None:
        state["model_loaded"] = model in loaded_models(state)
    return state


def _spawn(data_dir: str | Path, port: int, *extra: str) -> dict[str, Any]:
    """The server process for every configured model (`mlops serve`), in its own process group;
    its state. The model configs are this process's (MLOPS_MODEL_CONFIGS is passed on)."""
    log_path = serving_dir(data_dir) / "server.log"
    env = {**os.environ, "MLOPS_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-m", "mlops_assets.cli", "serve", "--port", str(port)]
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
    """Start the model server as a separate process (it loads every model that has a spec) and
    wait until `config`'s model is ready."""
    state = _spawn(data_dir, port)
    log_path = Path(state["log"])
    deadline = time.monotonic() + (timeout or config.serving.ready_timeout_seconds)
    while time.monotonic() < deadline:
        if not pid_alive(state["pid"]):
            raise DeploymentError("model server exited before it was ready:\n" + _tail(log_path))
        if _live(state):  # the start-up loads are done once it listens
            _write_state(data_dir, state)
            if config.name in loaded_models(state):
                return state
            # Not loaded at start (its versions failed): ask for it to get the reason; a server
            # that serves nothing is not left behind.
            try:
                return _load(data_dir, state, config)
            except DeploymentError:
                if not loaded_models(state):
                    stop_server(data_dir)
                raise
        time.sleep(0.2)
    stop_pid_group(state["pid"])
    raise DeploymentError(f"model server not ready after the timeout:\n{_tail(log_path)}")


def start_standby(data_dir: str | Path, port: int, config: ModelConfig | None = None) -> dict:
    """Start the server with no model, without waiting: its imports (~10 s) overlap whatever
    runs before the first deployment, which then only loads its model. A server that already
    runs is left as it is."""
    state = _read_state(data_dir)
    if state is not None and pid_alive(state["pid"]):
        return state
    state = {**_spawn(data_dir, port, "--standby"), "standby": True}
    _write_state(data_dir, state)
    return state


def stop_server(data_dir: str | Path, model: str | None = None, timeout: float = 60.0) -> bool:
    """Stop serving `model`: unload it when the server has other models loaded (they keep
    serving), else stop the server (SIGTERM: it drains requests and flushes the inference logs).
    Without `model`, stop the server."""
    state = _read_state(data_dir)
    if state is None:
        return False
    if model is not None and pid_alive(state["pid"]):
        others = [m for m in loaded_models(state) if m != model]
        if others:
            url = f"{state['endpoint']}/v2/repository/models/{model}/unload"
            return _http("POST", url, timeout=timeout)[0] == 200
    stopped = stop_pid_group(state["pid"], timeout) if pid_alive(state["pid"]) else False
    _state_path(data_dir).unlink(missing_ok=True)
    return stopped


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def deploy_local(data_dir: str | Path, port: int, config: ModelConfig) -> dict[str, Any]:
    """Serve the model's pending spec on the local server: start it, or have the running one
    (or the one in standby) load that model (it reads the spec from the deployments table; the
    other models are not touched). Raises DeploymentError if the new versions fail their
    readiness check; the old ones keep serving."""
    timeout = config.serving.ready_timeout_seconds
    state = _live_state(data_dir, timeout)
    if state is None:
        stop_server(data_dir)  # a stale state file or a hung process
        return start_server(data_dir, port, config)
    state = _load(data_dir, state, config)
    if state.pop("standby", False):
        _write_state(data_dir, state)
    return state


def _load(data_dir: str | Path, state: dict[str, Any], config: ModelConfig) -> dict[str, Any]:
    timeout = config.serving.ready_timeout_seconds or DEFAULT_READY_TIMEOUT
    url = f"{state['endpoint']}/v2/repository/models/{config.name}/load"
    status, body = _http("POST", url, timeout=timeout)
    if status == 404:
        raise DeploymentError(
            f"the local server ({state['endpoint']}, pid {state['pid']}) does not serve "
            f"{config.name!r}: {_error_message(body)}; it was started before that model was "
            "configured: stop it (`mlops stop`) and deploy again"
        )
    if status != 200:
        raise DeploymentError(
            f"the new deployment of {config.name} failed its readiness check (HTTP {status}): "
            f"{_error_message(body)}; the previous versions keep serving"
        )
    return state


def _live_state(data_dir: str | Path, timeout: float) -> dict[str, Any] | None:
    """The running server's state once it answers its liveness probe; a server still starting
    (a standby one importing) is given `timeout` seconds. None: no server, or a hung one."""
    state = _read_state(data_dir)
    if state is None:
        return None
    deadline = time.monotonic() + (timeout if state.get("standby") else 0)
    while pid_alive(state["pid"]):
        if _live(state):
            return state
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)
    return None


def _error_message(body: str) -> str:
    try:
        return str(json.loads(body).get("error", body))
    except ValueError:
        return body
