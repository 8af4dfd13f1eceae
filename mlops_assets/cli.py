"""`mlops`: the project's commands. Heavy imports happen inside each command."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import typer

from mlops_assets.settings import PROJECT_ROOT, get_settings

app = typer.Typer(
    help="Lakehouse MLOps: the model lifecycle as one Dagster asset graph.", no_args_is_help=True
)


def _echo(step: str, message: str) -> None:
    import sys

    typer.secho(f"[{step}] ", fg=typer.colors.CYAN, nl=False)
    typer.echo(message)
    sys.stdout.flush()  # progress shows as it happens, also when piped


@app.command()
def prepare() -> None:
    """Parse the dbt project for the current MLOPS_ENV (writes the manifest the code location loads)."""
    from mlops_assets.defs.dbt.project import prepare_manifest

    started = time.perf_counter()
    path = prepare_manifest()
    _echo("prepare", f"dbt manifest ready at {path} ({time.perf_counter() - started:.1f}s)")


@app.command()
def world() -> None:
    """The data folder's simulated world (seed, scale, calendar, drift): what every run generates."""
    from mlops_assets.world import world_path

    settings = get_settings()
    current = settings.world()
    path = world_path(settings.data_dir)
    where = path if path.exists() else f"{path} (not written yet: the default)"
    _echo("world", f"{current.describe()}  [{where}]")
    typer.echo(current.model_dump_json(indent=2))


@app.command()
def generate(
    days: int = typer.Option(None, help="Landing days from the world's first day (default: all)."),
) -> None:
    """Write landing Parquet for the world's days, without Dagster (the landing assets do the same)."""
    from mlops_assets.datagen.landing import land_day
    from mlops_assets.world import ensure_world

    settings = get_settings()
    world = ensure_world(settings.data_dir)
    n_days = min(days or world.days, world.days)
    started = time.perf_counter()
    totals: dict[str, int] = {}
    for i in range(n_days):
        day = world.start_date + dt.timedelta(days=i)
        for table, (_, rows) in land_day(world, settings.landing, day).items():
            totals[table] = totals.get(table, 0) + rows
    _echo(
        "generate",
        f"{n_days} days into {settings.landing} in {time.perf_counter() - started:.1f}s: {totals}",
    )


def _fail(message: str) -> int:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return 1


@app.command()
def demo(
    customers: int = typer.Option(None, help="Customers in the world (default: the world's)."),
    days: int = typer.Option(None, help="Days of history in the world (default: the world's)."),
    drift_day: int = typer.Option(None, help="Day of the history from which drift is on."),
    no_drift: bool = typer.Option(False, "--no-drift", help="A world without drift."),
    keep_serving: bool = typer.Option(False, help="Leave the model server running at the end."),
) -> None:
    """The main job on the embedded profile, the whole loop: history with drift, lakehouse, training,
    deployment, scoring, monitoring, the daemon's retraining and canary, and a timeline. The world
    (scale, calendar, drift) is the data folder's; the options replace it."""
    from mlops_assets.demo import DemoOptions, run_demo
    from mlops_assets.demo.plan import PlanError

    options = DemoOptions(customers, days, drift_day, no_drift, keep_serving)
    try:
        code = run_demo(options)
    except (PlanError, ValueError) as err:
        raise typer.Exit(_fail(str(err))) from None
    raise typer.Exit(code)


@app.command()
def status(model: str = typer.Argument("churn")) -> None:
    """What serves, at what split, and the latest monitoring state."""
    from mlops_assets.monitoring.monitors import read_table
    from mlops_assets.serving.rollout import status as rollout_status

    config = _model_config(model)
    settings = get_settings()
    state = rollout_status(settings, config)
    aliases = ", ".join(f"{k}=v{v}" for k, v in state["aliases"].items() if v) or "none"
    _echo("registry", f"{model}: {aliases}")
    split = ", ".join(f"v{v}: {p}%" for v, p in state["split"].items()) or "nothing deployed"
    server = state["server"]
    _echo(
        "serving",
        f"{split}; "
        + (
            f"server {server['endpoint']} (pid {server['pid']})"
            if server
            else "no local server running"
        ),
    )
    table = read_table(settings, config)
    status_rows = table[table["metric"] == "status"]
    if status_rows.empty:
        _echo("monitoring", "no monitoring results yet")
    for monitor, group in status_rows.sort_values("day").groupby("monitor"):
        last = group.iloc[-1]
        failed = int(group["breached"].sum())
        _echo(
            "monitoring",
            f"{monitor}: last day {last['day']} {last['detail']}; {failed} failed day(s) in {len(group)}",
        )


dataset_app = typer.Typer(help="Versioned training sets (Feast + DVC).", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
def dataset_build(service: str = typer.Option("churn_v1", help="Feast feature service.")) -> None:
    """Write the point-in-time training set of a feature service (the dvc.yaml stage's command)."""
    from mlops_assets.datasets.training_set import DatasetError, build_training_set, load_labels
    from mlops_assets.features.store import feature_store

    settings = get_settings()
    try:
        summary = build_training_set(
            feature_store(settings), service, load_labels(settings), settings.datasets_dir / service
        )
    except DatasetError as err:
        raise typer.Exit(_fail(str(err))) from None
    _echo("dataset", f"{service}: {summary.rows} rows in {summary.path}")


@dataset_app.command("pull")
def dataset_pull(
    md5: str = typer.Argument(..., help="The DVC hash a model's lineage cites (dvc_md5)."),
    out: Path = typer.Option(None, help="Where to put it (default: datasets/<md5>)."),
) -> None:
    """Fetch an exact dataset version from the DVC remote, verifying every object."""
    from mlops_assets.datasets.versioning import VersioningError, pull

    settings = get_settings()
    dest = out or settings.datasets_dir / md5.removesuffix(".dir")
    try:
        path = pull(settings, md5, dest)
    except VersioningError as err:
        raise typer.Exit(_fail(str(err))) from None
    _echo("dataset", f"{md5} -> {path}")


pipeline_app = typer.Typer(help="Kubeflow Pipelines.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("compile")
def pipeline_compile(
    out: Path = typer.Option(
        PROJECT_ROOT / "build" / "training_pipeline.yaml", help="Output YAML."
    ),
) -> None:
    """Compile the training pipeline to KFP v2 YAML (a build output, never committed)."""
    from kfp import compiler

    from mlops_assets.pipelines.training_pipeline import training_pipeline

    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(training_pipeline, str(out))
    _echo("pipeline", f"compiled to {out}")


def _model_config(model: str):
    from mlops_assets.model_config import model_configs

    configs = model_configs()
    if model not in configs:
        raise typer.Exit(_fail(f"unknown model {model!r}; configured: {sorted(configs)}"))
    return configs[model]


@app.command()
def serve(
    model: str = typer.Argument("churn"),
    version: str = typer.Option(None, help="Serve this registered version only (prod pods)."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(None, help="Default: the model config's serving.port."),
) -> None:
    """Run the KServe model server in the foreground (`mlops deploy` starts it in the background)."""
    import sys

    from mlops_assets.serving.server import main

    config = _model_config(model)
    port = port or get_settings().serving_port or config.serving.port
    argv = ["--model", model, "--host", host, "--port", str(port)]
    sys.argv = sys.argv[:1]
    raise typer.Exit(main(argv + (["--version", version] if version else [])))


@app.command()
def deploy(
    model: str = typer.Argument("churn"),
    reason: str = typer.Option("manual deploy", help="Recorded in the decision log."),
) -> None:
    """Serve the registry's champion (and challenger as a canary): local server or InferenceService."""
    from mlops_assets.serving.deployment import DeploymentError
    from mlops_assets.serving.rollout import RolloutError
    from mlops_assets.serving.rollout import deploy as deploy_model

    try:
        result = deploy_model(get_settings(), _model_config(model), actor="cli", reason=reason)
    except (DeploymentError, RolloutError) as err:
        raise typer.Exit(_fail(str(err))) from None
    _echo("deploy", f"{model}: {_split(result)}")
    if "endpoint" in result:
        _echo("deploy", f"serving at {result['endpoint']} (pid {result['pid']})")


def _split(result: dict) -> str:
    from mlops_assets.serving.deployment import DeploymentSpec

    spec = DeploymentSpec.model_validate(result["spec"]) if "spec" in result else None
    split = spec.split() if spec else result["split"]
    return ", ".join(f"v{v}: {share}%" for v, share in split.items())


@app.command()
def promote(
    model: str = typer.Argument("churn"),
    reason: str = typer.Option("manual promotion", help="Recorded in the decision log."),
) -> None:
    """The challenger becomes champion and takes all traffic (aliases and traffic move together)."""
    from mlops_assets.serving.deployment import DeploymentError
    from mlops_assets.serving.rollout import RolloutError
    from mlops_assets.serving.rollout import promote as promote_model

    try:
        result = promote_model(get_settings(), _model_config(model), actor="cli", reason=reason)
    except (DeploymentError, RolloutError) as err:
        raise typer.Exit(_fail(str(err))) from None
    _echo(
        "promote",
        f"{model}: champion v{result['champion']} (was v{result['previous_champion']}); {_split(result)}",
    )


@app.command()
def rollback(
    model: str = typer.Argument("churn"),
    reason: str = typer.Option("manual rollback", help="Recorded in the decision log."),
) -> None:
    """Drop a running canary, or restore the previous champion."""
    from mlops_assets.serving.deployment import DeploymentError
    from mlops_assets.serving.rollout import RolloutError
    from mlops_assets.serving.rollout import rollback as rollback_model

    try:
        result = rollback_model(get_settings(), _model_config(model), actor="cli", reason=reason)
    except (DeploymentError, RolloutError) as err:
        raise typer.Exit(_fail(str(err))) from None
    _echo(
        "rollback",
        f"{model}: rolled back v{result['rolled_back']}; champion v{result['champion']}; {_split(result)}",
    )


@app.command()
def stop(model: str = typer.Argument("churn")) -> None:
    """Stop the local model server (it drains requests and flushes the inference log first)."""
    from mlops_assets.serving.deployment import stop_server

    _echo(
        "stop", f"{model}: {'stopped' if stop_server(get_settings(), model) else 'was not running'}"
    )


@app.command()
def sql(
    query: str = typer.Argument(None, help="A Trino SQL query (or use --file)."),
    file: Path = typer.Option(None, "--file", "-f", help="A .sql file with one Trino SQL query."),
) -> None:
    """Run analyst SQL (Trino dialect): on Trino in prod, on DuckDB over the same Iceberg tables here."""
    from mlops_assets.lakehouse.sql import QueryError, run_sql

    if (query is None) == (file is None):
        raise typer.Exit(_fail("give a query or --file, not both"))
    text = file.read_text() if file else query
    try:
        frame = run_sql(get_settings(), text)
    except QueryError as err:
        raise typer.Exit(_fail(str(err))) from None
    typer.echo(frame.to_string(index=False))


if __name__ == "__main__":
    app()
