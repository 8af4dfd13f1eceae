"""`mlops status | serve | deploy | promote | rollback | stop`: what serves a model and how it
changes. The functions are plain Typer command signatures; `mlops_assets.cli` registers `COMMANDS`
on the `mlops` app in this order (where `mlops --help` lists them). Heavy imports happen inside the
commands, as in `mlops_assets.cli`."""

from __future__ import annotations

from functools import partial

import typer

from mlops_assets.api.cli import audit_cli
from mlops_assets.settings import get_settings
from mlops_assets.terminal import echo, fail

MODEL = typer.Argument(None, help="A model config's name (default: the only one configured).")
EVERY_MODEL = typer.Argument(None, help="A model config's name (default: every model).")


def _model_config(model: str | None):
    from mlops_assets.model_config import model_configs

    configs = model_configs()
    if model is None and len(configs) == 1:
        return next(iter(configs.values()))
    if model not in configs:
        asked = f"unknown model {model!r}" if model else "name a model"
        raise typer.Exit(fail(f"{asked}; configured: {sorted(configs)}"))
    return configs[model]


def status(model: str = EVERY_MODEL) -> None:
    """What serves, at what split, and the latest monitoring state (of every model, or one)."""
    from mlops_assets.model_config import model_configs
    from mlops_assets.resources import open_resources

    configs = [_model_config(model)] if model else list(model_configs().values())
    with open_resources() as res:
        for config in configs:
            _status_of(res, config)


def _status_of(res, config) -> None:
    from mlops_assets.monitoring.results import read_table
    from mlops_assets.serving.rollout import status as rollout_status

    state = rollout_status(res.model_registry.registry(), res.deployer, config)
    table = read_table(res.lakehouse.catalog(), config)
    aliases = ", ".join(f"{k}=v{v}" for k, v in state["aliases"].items() if v) or "none"
    echo("registry", f"{config.name}: {aliases}")
    split = ", ".join(f"v{v}: {p}%" for v, p in state["split"].items()) or "nothing deployed"
    server = state["server"]
    where = f"server {server['endpoint']} (pid {server['pid']})" if server else None
    echo("serving", f"{split}; {where or 'no local server running'}")
    status_rows = table[table["metric"] == "status"]
    if status_rows.empty:
        echo("monitoring", "no monitoring results yet")
    for monitor, group in status_rows.sort_values("day").groupby("monitor"):
        last = group.iloc[-1]
        failed = int(group["breached"].sum())
        summary = f"last day {last['day']} {last['detail']}; {failed} failed day(s) in {len(group)}"
        echo("monitoring", f"{monitor}: {summary}")


def _serving_port(configs: list) -> int:
    """MLOPS_SERVING_PORT, else the serving.port the configs share."""
    settings = get_settings()
    if settings.serving_port:
        return settings.serving_port
    ports = {c.serving.port for c in configs}
    if len(ports) > 1:
        raise typer.Exit(
            fail(
                f"the model configs name several serving ports {sorted(ports)}; set one with "
                "--port or MLOPS_SERVING_PORT (all models share one server)"
            )
        )
    return ports.pop()


def serve(
    models: list[str] = typer.Argument(
        None, help="Model configs to serve (default: every configured model)."
    ),
    version: str = typer.Option(
        None, help="Serve this registered version of the one model named (prod pods)."
    ),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(None, help="Default: MLOPS_SERVING_PORT, else serving.port."),
    standby: bool = typer.Option(
        False, "--standby", help="Start with no model; load a model on its first load request."
    ),
) -> None:
    """Run the KServe model server in the foreground, every configured model side by side
    (`mlops deploy` starts it in the background)."""
    import signal

    from mlops_assets.resources import open_resources
    from mlops_assets.serving.server import serve as serve_model

    # A server must stop on SIGTERM while it starts, too, whatever it inherited: a shell's
    # background job (nohup, `&`) starts with SIGINT ignored, Dagster's resource set-up maps
    # SIGTERM to SIGINT's handler, and a parent that ran Dagster passes both on ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    from mlops_assets.model_config import model_configs

    configs = [_model_config(m) for m in models] if models else list(model_configs().values())
    if version and len(configs) != 1:
        raise typer.Exit(fail("--version pins one model: name exactly one"))
    settings = get_settings()
    port = port or _serving_port(configs)
    with open_resources(settings) as resources:
        code = serve_model(resources, settings.data_dir, configs, host, port, version, standby)
    raise typer.Exit(code)


def _rollout(action: str, model: str | None, reason: str) -> dict:
    """deploy | promote | rollback, with the registry and the deployer of this environment."""
    from mlops_assets.resources import open_resources
    from mlops_assets.serving import rollout
    from mlops_assets.serving.deployment import DeploymentError

    config = _model_config(model)
    operation = getattr(rollout, action)
    try:
        with open_resources() as res:
            registry = res.model_registry.registry()
            run = partial(operation, registry, res.deployer, config, actor="cli", reason=reason)
            return audit_cli(res, action, config.name, {"reason": reason}, run)
    except (DeploymentError, rollout.RolloutError) as err:
        raise typer.Exit(fail(str(err))) from None


def _split(result: dict) -> str:
    from mlops_assets.serving.deployment import DeploymentSpec

    spec = DeploymentSpec.model_validate(result["spec"]) if "spec" in result else None
    split = spec.split() if spec else result["split"]
    return ", ".join(f"v{v}: {share}%" for v, share in split.items())


def deploy(
    model: str = MODEL,
    reason: str = typer.Option("manual deploy", help="Recorded in the decision log."),
) -> None:
    """Serve the registry's champion (and challenger as a canary): local server or InferenceService."""
    result = _rollout("deploy", model, reason)
    echo("deploy", _split(result))
    if "endpoint" in result:
        echo("deploy", f"serving at {result['endpoint']} (pid {result['pid']})")


def promote(
    model: str = MODEL,
    reason: str = typer.Option("manual promotion", help="Recorded in the decision log."),
) -> None:
    """The challenger becomes champion and takes all traffic (aliases and traffic move together)."""
    result = _rollout("promote", model, reason)
    was = result["previous_champion"]
    echo("promote", f"champion v{result['champion']} (was v{was}); {_split(result)}")


def rollback(
    model: str = MODEL,
    reason: str = typer.Option("manual rollback", help="Recorded in the decision log."),
) -> None:
    """Drop a running canary, or restore the previous champion."""
    result = _rollout("rollback", model, reason)
    rolled, champion = result["rolled_back"], result["champion"]
    echo("rollback", f"rolled back v{rolled}; champion v{champion}; {_split(result)}")


def stop(model: str = MODEL) -> None:
    """Stop serving a model: the local server unloads it (the others keep serving), or stops
    once it serves nothing else (it drains requests and flushes the inference logs first).
    With several models configured and none named: stop the server."""
    from mlops_assets.model_config import model_configs
    from mlops_assets.resources import open_resources

    name = _model_config(model).name if model or len(model_configs()) == 1 else None
    with open_resources() as res:
        run = (
            partial(res.deployer.stop, name)
            if name
            else partial(res.deployer.stop_all, sorted(model_configs()))
        )
        stopped = audit_cli(res, "stop", name or "", {}, run)
    echo("stop", f"{name or 'model server'}: {'stopped' if stopped else 'was not running'}")


COMMANDS = (status, serve, deploy, promote, rollback, stop)
