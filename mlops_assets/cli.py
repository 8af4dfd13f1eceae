"""`mlops`: the project's commands. Heavy imports happen inside each command."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path

import typer

from mlops_assets.settings import PROJECT_ROOT, get_settings

app = typer.Typer(
    help="Lakehouse MLOps: the model lifecycle as one Dagster asset graph.", no_args_is_help=True
)


def _echo(step: str, message: str) -> None:
    typer.secho(f"[{step}] ", fg=typer.colors.CYAN, nl=False)
    typer.echo(message)


def ensure_dagster_home() -> Path:
    """Point Dagster at the project's local instance (SQLite) unless DAGSTER_HOME is set."""
    home = Path(os.environ.get("DAGSTER_HOME") or get_settings().dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        shutil.copy(PROJECT_ROOT / "deploy" / "dagster" / "local" / "dagster.yaml", config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@app.command()
def prepare() -> None:
    """Parse the dbt project for the current MLOPS_ENV (writes the manifest the code location loads)."""
    from mlops_assets.defs.dbt.project import prepare_manifest

    started = time.perf_counter()
    path = prepare_manifest()
    _echo("prepare", f"dbt manifest ready at {path} ({time.perf_counter() - started:.1f}s)")


@app.command()
def generate(
    days: int = typer.Option(
        None, help="Landing days from MLOPS_START_DATE (default: MLOPS_HISTORY_DAYS)."
    ),
) -> None:
    """Write landing Parquet for a range of days, without Dagster (the landing assets do the same)."""
    from mlops_assets.datagen.landing import land_day

    settings = get_settings()
    cfg = settings.world_config()
    n_days = days or settings.history_days
    started = time.perf_counter()
    totals: dict[str, int] = {}
    for i in range(n_days):
        for table, (_, rows) in land_day(
            cfg, settings.landing, cfg.start_date + dt.timedelta(days=i)
        ).items():
            totals[table] = totals.get(table, 0) + rows
    _echo(
        "generate",
        f"{n_days} days into {settings.landing} in {time.perf_counter() - started:.1f}s: {totals}",
    )


def run_job(name: str, tags: dict[str, str] | None = None) -> str:
    """Run a job of the code location in this process, on the local instance; returns the run id."""
    import dagster as dg

    from mlops_assets.definitions import defs

    result = defs.resolve_job_def(name).execute_in_process(
        instance=dg.DagsterInstance.get(),
        tags={"mlops/trigger": "mlops demo", **(tags or {})},
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        raise_on_error=False,
    )
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        raise typer.Exit(
            _fail(f"run {result.run_id} of {name} failed at {failed}; see the logs above")
        )
    return result.run_id


def materialize_history(days: int) -> str:
    """Run the daily lakehouse job over `days` landing days as one run; returns the run id."""
    first = get_settings().start_date
    last = first + dt.timedelta(days=days - 1)
    return run_job(
        "daily_lakehouse_job",
        {
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        },
    )


def _fail(message: str) -> int:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return 1


@app.command()
def demo(
    days: int = typer.Option(None, help="Landing days to build (default: MLOPS_HISTORY_DAYS)."),
) -> None:
    """The main job on the embedded profile: raw data -> bronze -> silver -> gold, through Dagster."""
    settings = get_settings()
    n_days = days or settings.history_days
    started = time.perf_counter()
    home = ensure_dagster_home()
    _echo(
        "setup", f"profile {settings.env.value}, data in {settings.data_dir}, Dagster home {home}"
    )
    prepare()
    _echo(
        "lakehouse",
        f"landing {n_days} days of {settings.n_customers:,} customers and running dbt build",
    )
    run_id = materialize_history(n_days)
    _echo("lakehouse", f"run {run_id} succeeded")
    _summarize_gold()
    _summarize_features()
    _echo("training", "KFP training pipeline (kfp.local), MLflow registration, promotion gate")
    _echo("training", f"run {run_job('retrain_churn')} succeeded")
    _summarize_training()
    last = settings.start_date + dt.timedelta(days=n_days - 1)
    first = last - dt.timedelta(days=6)
    _echo("scoring", f"batch predictions by the champion for {first} .. {last} into Iceberg")
    scoring_tags = {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }
    _echo("scoring", f"run {run_job('daily_scoring_job', scoring_tags)} succeeded")
    _summarize_predictions()
    _echo(
        "done",
        f"in {time.perf_counter() - started:.1f}s. Open the UI with `make dev` (http://127.0.0.1:3000).",
    )


dataset_app = typer.Typer(help="Versioned training sets (Feast + DVC).", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
def dataset_build(service: str = typer.Option("churn_v1", help="Feast feature service.")) -> None:
    """Write the point-in-time training set of a feature service (the dvc.yaml stage's command)."""
    from mlops_assets.features.dataset import DatasetError, build_training_set, load_labels
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
    from mlops_assets.features.versioning import VersioningError, pull

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

    from kubeflow.training_pipeline import training_pipeline

    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(training_pipeline, str(out))
    _echo("pipeline", f"compiled to {out}")


def _model_config(model: str):
    from mlops_assets.models.config import model_configs

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
    argv = ["--model", model, "--host", host, "--port", str(port or config.serving.port)]
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
    from mlops_assets.serving.analytics import QueryError, run_sql

    if (query is None) == (file is None):
        raise typer.Exit(_fail("give a query or --file, not both"))
    text = file.read_text() if file else query
    try:
        frame = run_sql(get_settings(), text)
    except QueryError as err:
        raise typer.Exit(_fail(str(err))) from None
    typer.echo(frame.to_string(index=False))


def _summarize_gold() -> None:
    import duckdb

    settings = get_settings()
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        for table in ("silver.fct_orders", "gold.customer_features", "gold.churn_labels"):
            rows = con.sql(f"select count(*) from {table}").fetchone()[0]
            _echo("gold", f"{table}: {rows:,} rows")
        rate = con.sql("select avg(churned) from gold.churn_labels").fetchone()[0]
        _echo(
            "gold", f"churn rate in labelled snapshots: {rate:.1%}; Parquet in {settings.gold_dir}"
        )
    finally:
        con.close()


def _summarize_features() -> None:
    from mlops_assets.features.online import OnlineFeatureReader
    from mlops_assets.features.store import feature_store
    from mlops_assets.features.versioning import current_version

    settings = get_settings()
    version = current_version(settings, "churn_v1")
    _echo(
        "dataset",
        f"churn_v1 = DVC {version.md5} ({version.files} files) pushed to {version.remote_url}",
    )
    _echo("dataset", f"fetch it anywhere with: mlops dataset pull {version.md5}")
    store = feature_store(settings)
    reader = OnlineFeatureReader(store, "churn_v1")
    import duckdb

    path = settings.gold_dir / "customer_features.parquet"
    customer, as_of = duckdb.sql(
        f"select customer_id, event_timestamp from read_parquet('{path}') order by event_timestamp desc, customer_id limit 1"
    ).fetchone()
    now = as_of.replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
    row = reader.read([customer], now)[0]
    shown = {
        k: row[k]
        for k in (
            "plan",
            "segment",
            "order_count_30d",
            "lifetime_value_usd",
            "days_since_last_order_now",
        )
    }
    _echo("online", f"customer {customer} at {now:%Y-%m-%d}: {shown}")
    _echo("online", f"feature store: {settings.data_dir / 'feast'} (registry, SQLite online store)")


def _summarize_training() -> None:
    from mlops_assets.models.promotion import history
    from mlops_assets.models.registry import (
        CHALLENGER,
        CHAMPION,
        alias_version,
        client,
        tracking_uri,
    )

    settings = get_settings()
    mlflow_client = client(settings)
    for alias in (CHAMPION, CHALLENGER):
        version = alias_version(mlflow_client, "churn", alias)
        if version:
            run = mlflow_client.get_run(mlflow_client.get_model_version("churn", version).run_id)
            auc = run.data.metrics.get("model_test_roc_auc", float("nan"))
            kfp_run = run.data.tags.get("kfp_run_id")
            _echo(
                "registry",
                f"churn@{alias} = v{version} (test ROC AUC {auc:.3f}, KFP run {kfp_run})",
            )
    last = history(settings, "churn")[-1]
    _echo(
        "registry",
        f"last decision: v{last['version']} {last['event']} -> {last['outcome']} ({last['reason']})",
    )
    _echo(
        "registry",
        f"MLflow: {tracking_uri(settings)} (view with: mlflow ui --backend-store-uri <that>)",
    )


def _summarize_predictions() -> None:
    from mlops_assets.serving.analytics import run_sql

    query = PROJECT_ROOT / "analytics" / "daily_volume.sql"
    frame = run_sql(get_settings(), query.read_text())
    _echo(
        "sql",
        f"mlops sql --file {query.relative_to(PROJECT_ROOT)}  (Trino SQL, here on DuckDB + Iceberg)",
    )
    typer.echo(frame.tail(7).to_string(index=False))


if __name__ == "__main__":
    app()
