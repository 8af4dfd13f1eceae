"""`mlops`: the project's commands. Each parses its arguments and calls the library with the
environment's resources (`mlops_assets.resources.open_resources`); heavy imports happen inside the
commands. A command naming no model works on the only configured one. The serving commands
(status, serve, deploy, promote, rollback, stop) live in `mlops_assets.serving_cli`."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from mlops_assets.api.cli import api_app
from mlops_assets.serving_cli import COMMANDS as SERVING_COMMANDS
from mlops_assets.settings import PROJECT_ROOT, get_settings
from mlops_assets.terminal import echo, fail

app = typer.Typer(
    help="Lakehouse MLOps: the model lifecycle as one Dagster asset graph.", no_args_is_help=True
)
app.add_typer(api_app, name="api")


@app.command()
def prepare() -> None:
    """Parse the dbt project for the current MLOPS_ENV (writes the manifest the code location
    loads); outside prod, also the local Dagster instance `make dev` and the demo open."""
    from mlops_assets.defs.dbt.project import prepare_manifest
    from mlops_assets.lakehouse.duck import install_extensions
    from mlops_assets.settings import get_settings

    started = time.perf_counter()
    # dbt-duckdb and Feast's ibis autoload them; DuckDB cannot download them here.
    echo("prepare", f"DuckDB extensions installed: {', '.join(install_extensions())}")
    path = prepare_manifest()
    echo("prepare", f"dbt manifest ready at {path} ({time.perf_counter() - started:.1f}s)")
    settings = get_settings()
    if settings.has_local_dagster_instance:
        from mlops_assets.demo.runs import ensure_dagster_home

        echo("prepare", f"Dagster instance at {ensure_dagster_home(settings)}")


@app.command()
def world() -> None:
    """The data folder's simulated world (seed, scale, calendar, drift): what every run generates."""
    from mlops_assets.world import world_path

    settings = get_settings()
    current = settings.world()
    path = world_path(settings.data_dir)
    where = path if path.exists() else f"{path} (not written yet: the default)"
    echo("world", f"{current.describe()}  [{where}]")
    typer.echo(current.model_dump_json(indent=2))


@app.command()
def generate(
    days: int = typer.Option(None, help="Landing days from the world's first day (default: all)."),
) -> None:
    """Write landing Parquet for the world's days, without Dagster (the landing assets do the same)."""
    from mlops_assets.datagen.landing import land_days
    from mlops_assets.world import ensure_world

    settings = get_settings()
    started = time.perf_counter()
    totals = land_days(ensure_world(settings.data_dir), settings.landing, days)
    took = time.perf_counter() - started
    echo("generate", f"into {settings.landing} in {took:.1f}s: {totals}")


@app.command()
def demo(
    customers: int = typer.Option(None, help="Customers in the world (default: the world's)."),
    days: int = typer.Option(None, help="Days of history in the world (default: the world's)."),
    drift_day: int = typer.Option(None, help="Day of the history from which drift is on."),
    no_drift: bool = typer.Option(False, "--no-drift", help="A world without drift."),
    fraud_drift_day: int = typer.Option(None, help="Day from which fraud takes a new pattern."),
    keep_serving: bool = typer.Option(False, help="Leave the model server running at the end."),
    model: str = typer.Option(None, help="Only this model's story (default: every model)."),
) -> None:
    """The main job on the embedded profile, the whole loop: history with drift, lakehouse, training,
    deployment, scoring, monitoring, the daemon's retraining and canary, and a timeline. The world
    (scale, calendar, drift) is the data folder's; the options replace it."""
    from mlops_assets.demo import DemoOptions, run_demo
    from mlops_assets.demo.plan import PlanError

    options = DemoOptions(
        customers, days, drift_day, no_drift, keep_serving, model, fraud_drift_day
    )
    try:
        code = run_demo(options)
    except (PlanError, ValueError) as err:
        raise typer.Exit(fail(str(err))) from None
    _skip_final_collection()
    raise typer.Exit(code)


def _skip_final_collection() -> None:
    """After the whole loop the heap holds millions of objects (Dagster, Feast, MLflow,
    scikit-learn); the interpreter's last garbage collection would walk them for 2-3 s before the
    prompt returns. Everything is flushed and stopped by now: exempt them."""
    import gc

    gc.freeze()


# status, serve, deploy, promote, rollback, stop: mlops_assets/serving_cli.py. Registered here,
# between demo and sql, so `mlops --help` lists the commands in the same order.
for command in SERVING_COMMANDS:
    app.command()(command)


dataset_app = typer.Typer(help="Versioned training sets (Feast + DVC).", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
def dataset_build(
    service: str = typer.Option(..., help="A model's Feast feature service."),
) -> None:
    """Write the point-in-time training set of a feature service (the dvc.yaml stage's command)."""
    from mlops_assets.datasets.training_set import (
        DatasetError,
        Labels,
        build_training_set,
        load_labels,
    )
    from mlops_assets.datasets.versioning import datasets_dir
    from mlops_assets.model_config import model_configs
    from mlops_assets.resources import open_resources

    configs = {c.feature_service: c for c in model_configs().values()}
    if service not in configs:
        raise typer.Exit(fail(f"no model uses feature service {service!r}: {sorted(configs)}"))
    spec = Labels.of(configs[service])
    out = datasets_dir(get_settings()) / service
    try:
        with open_resources() as res:
            labels = load_labels(res.warehouse, spec)
            summary = build_training_set(res.feature_store.store(), spec, labels, out)
    except DatasetError as err:
        raise typer.Exit(fail(str(err))) from None
    echo("dataset", f"{service}: {summary.rows} rows in {summary.path}")


@dataset_app.command("pull")
def dataset_pull(
    md5: str = typer.Argument(..., help="The DVC hash a model's lineage cites (dvc_md5)."),
    out: Path = typer.Option(None, help="Where to put it (default: datasets/<md5>)."),
) -> None:
    """Fetch an exact dataset version from the DVC remote, verifying every object."""
    from mlops_assets.datasets.versioning import VersioningError, datasets_dir, pull

    settings = get_settings()
    dest = out or datasets_dir(settings) / md5.removesuffix(".dir")
    try:
        path = pull(settings, md5, dest)
    except VersioningError as err:
        raise typer.Exit(fail(str(err))) from None
    echo("dataset", f"{md5} -> {path}")


services_app = typer.Typer(
    help="The services profile on this node: SeaweedFS (S3 + Iceberg REST), PostgreSQL, Redis.",
    no_args_is_help=True,
)
app.add_typer(services_app, name="services")


@services_app.command("up")
def services_up() -> None:
    """Start SeaweedFS (S3 and the Iceberg REST catalog, on 127.0.0.1), create the profile's
    PostgreSQL databases and check the others."""
    from mlops_assets.service_stores import ensure_databases
    from mlops_assets.services import ServiceError, start_seaweed

    node = get_settings().seaweed()
    try:
        state = start_seaweed(node)
    except ServiceError as err:
        raise typer.Exit(fail(str(err))) from None
    echo("services", f"SeaweedFS pid {state['pid']}, data {node.folder}, log {node.log_path}")
    if _print_services():
        echo("services", f"databases created: {ensure_databases(get_settings()) or 'none'}")


@services_app.command("status")
def services_status() -> None:
    """What runs where; exits 1 if a service is down."""
    if not _print_services():
        raise typer.Exit(1)


@services_app.command("down")
def services_down() -> None:
    """Stop SeaweedFS (PostgreSQL and Redis belong to the machine: they keep running)."""
    from mlops_assets.services import stop_seaweed

    stopped = stop_seaweed(get_settings().seaweed())
    echo("services", "SeaweedFS stopped" if stopped else "SeaweedFS was not running")


def _print_services() -> bool:
    from mlops_assets.services import postgres_status, redis_status, seaweed_status

    settings = get_settings()
    statuses = [
        *seaweed_status(settings.seaweed()),
        postgres_status(settings.postgres_url),
        redis_status(settings.redis_url),
    ]
    for status in statuses:
        up = typer.style("up  ", fg=typer.colors.GREEN)
        mark = up if status.ok else typer.style("DOWN", fg=typer.colors.RED)
        typer.echo(f"  {mark} {status.name:<13} {status.where:<40} {status.detail}")
    return all(status.ok for status in statuses)


pipeline_app = typer.Typer(help="Kubeflow Pipelines.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("compile")
def pipeline_compile(
    out: Path = typer.Option(
        PROJECT_ROOT / "kubeflow" / "training_pipeline.yaml", help="Output YAML."
    ),
) -> None:
    """Compile the training pipeline to KFP v2 YAML (kubeflow/training_pipeline.yaml is committed;
    a test keeps it equal to what the source compiles to)."""
    from mlops_assets.pipelines.training_pipeline import compile_pipeline

    compile_pipeline(out)
    echo("pipeline", f"compiled to {out}")


@app.command()
def sql(
    query: str = typer.Argument(None, help="A Trino SQL query (or use --file)."),
    file: Path = typer.Option(None, "--file", "-f", help="A .sql file with one Trino SQL query."),
) -> None:
    """Run analyst SQL (Trino dialect): on Trino in prod, on DuckDB over the same Iceberg tables here."""
    from mlops_assets.lakehouse.sql import QueryError
    from mlops_assets.lakehouse.warehouse import TrinoConfigError
    from mlops_assets.resources import open_resources

    if (query is None) == (file is None):
        raise typer.Exit(fail("give a query or --file, not both"))
    text = file.read_text() if file else query
    try:
        with open_resources() as res:
            frame = res.warehouse.analyst_sql(text)
    except (QueryError, TrinoConfigError) as err:
        raise typer.Exit(fail(str(err))) from None
    typer.echo(frame.to_string(index=False))


if __name__ == "__main__":
    app()
