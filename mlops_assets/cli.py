"""`mlops`: the project's commands. Heavy imports happen inside each command."""

from __future__ import annotations

import datetime as dt
import json
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
    import sys

    typer.secho(f"[{step}] ", fg=typer.colors.CYAN, nl=False)
    typer.echo(message)
    sys.stdout.flush()  # progress shows as it happens, also when piped


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


def run_job(
    name: str,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
    exclude: list[list[str]] | None = None,
) -> str:
    """Run a job of the code location in this process, on the local instance; returns the run id."""
    import dagster as dg

    from mlops_assets.definitions import defs

    job = defs.resolve_job_def(name)
    selection = None
    if exclude:
        skip = {dg.AssetKey(k) for k in exclude}
        selection = [k for k in job.asset_layer.selected_asset_keys if k not in skip]
    result = job.execute_in_process(
        instance=dg.DagsterInstance.get(),
        asset_selection=selection,
        tags={"mlops/trigger": "mlops demo", **(tags or {})},
        run_config={
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            **(run_config or {}),
        },
        raise_on_error=False,
    )
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        raise typer.Exit(
            _fail(f"run {result.run_id} of {name} failed at {failed}; see the logs above")
        )
    return result.run_id


def _range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


def materialize_history(days: int, exclude: list[list[str]] | None = None) -> str:
    """Run the daily lakehouse job over `days` landing days as one run; returns the run id."""
    first = get_settings().start_date
    last = first + dt.timedelta(days=days - 1)
    return run_job("daily_lakehouse_job", _range_tags(first, last), exclude=exclude)


def _fail(message: str) -> int:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return 1


@app.command()
def demo(
    days: int = typer.Option(None, help="Landing days to build (default: MLOPS_HISTORY_DAYS)."),
    drift_day: int = typer.Option(165, help="Day of the history from which drift is switched on."),
    keep_serving: bool = typer.Option(False, help="Leave the model server running at the end."),
) -> None:
    """The main job on the embedded profile, the whole loop: history with drift, lakehouse, training,
    deployment, scoring, monitoring, the daemon's retraining and canary, and a timeline."""
    import dagster as dg

    from mlops_assets import loop
    from mlops_assets.models.config import model_configs
    from mlops_assets.serving.deployment import stop_server

    started = time.perf_counter()
    base = get_settings()
    n_days = days or base.history_days
    drift_from = base.start_date + dt.timedelta(days=drift_day)
    # Drift switches are settings; set them for this process and the daemon's runs.
    os.environ.setdefault("MLOPS_COVARIATE_DRIFT_FROM", drift_from.isoformat())
    os.environ.setdefault("MLOPS_CONCEPT_DRIFT_FROM", drift_from.isoformat())
    os.environ.setdefault("MLOPS_HISTORY_DAYS", str(n_days))
    get_settings.cache_clear()
    settings = get_settings()
    config = model_configs()["churn"]
    plan = loop.Plan(
        settings.start_date, settings.start_date + dt.timedelta(days=n_days - 1), drift_from
    )
    timeline = loop.Timeline()
    timings: dict[str, float] = {}

    def step(name: str, message: str) -> None:
        _echo(name, f"{message}  [{time.perf_counter() - started:.0f}s]")

    loop.reset(settings)
    home = ensure_dagster_home()
    step("setup", f"profile {settings.env.value}, data in {settings.data_dir}, Dagster home {home}")
    prepare()
    timeline.add(
        "drift_switched_on", "covariate (tiktok signups) and concept drift", day=drift_from
    )
    # Create the instance's SQLite storages here first: two processes creating them at once can
    # leave two alembic heads in a fresh instance.
    dg.DagsterInstance.get()
    daemon = loop.start_daemon(settings, home)
    step("daemon", f"dagster-daemon started (pid {daemon.pid}); sensors run under it")
    try:
        step(
            "lakehouse",
            f"{n_days} days of {settings.n_customers:,} customers, drift from {drift_from}: landing -> dbt -> Feast -> DVC",
        )
        # The training set is built by the training run itself, with its label cutoff.
        run_id = materialize_history(n_days, exclude=[["datasets", "churn_v1"]])
        timeline.add(
            "lakehouse_built", f"{n_days} landing days, dbt, features", run_id, day=plan.last_day
        )
        _summarize_gold()

        known_by = plan.drift_day
        step(
            "training",
            f"first model on the labels known by {known_by} (before the drift): KFP -> MLflow -> gate -> deploy",
        )
        run_id = run_job(
            "retrain_churn",
            {"mlops/reason": "first model"},
            {"ops": {"datasets__churn_v1": {"config": {"labels_known_by": known_by.isoformat()}}}},
        )
        _summarize_training()
        first_version = _alias("champion")
        timeline.add(
            "trained_and_deployed", "first champion, serving 100%", run_id, first_version, known_by
        )
        _summarize_serving(config)

        first, last = plan.score_days
        step(
            "scoring",
            f"daily batch predictions {first} .. {last} into Iceberg, then delayed actuals",
        )
        run_id = run_job("daily_scoring_job", _range_tags(first, last))
        timeline.add("scored", f"{first} .. {last}", run_id, first_version, last)
        _summarize_predictions()

        first, last = plan.monitor_days
        step(
            "monitoring",
            f"performance, feature drift, prediction drift, data quality for {first} .. {last}",
        )
        monitoring_started = time.time()  # the sensor may act while this run is still writing
        run_id = run_job("daily_monitoring_job", _range_tags(first, last))
        degraded_from, windows = loop.degradation_summary(settings, config)
        timeline.add(
            "monitored",
            f"degraded day runs: {windows or 'none'}",
            run_id,
            first_version,
            degraded_from,
        )
        _summarize_monitoring(config)

        step("sensor", "waiting for the daemon's retraining sensor")
        instance = dg.DagsterInstance.get()
        record = loop.wait_for_run(
            instance,
            ("mlops/trigger", "degradation"),
            "retrain_churn",
            monitoring_started - 1,
            600,
            lambda m: step("sensor", m),
        )
        tags = loop.describe_run(instance, record.dagster_run.run_id)
        visible_at = loop.conclusive_at(settings, config, tags.get("mlops/window", ""))
        launched_s = record.create_timestamp.timestamp() - visible_at
        timeline.add(
            "retraining_launched",
            f"{tags.get('mlops/reason', '')}; launched {launched_s:.0f}s after the conclusive "
            f"day's check failed; labels known by {tags.get('mlops/labels_known_by')}",
            record.dagster_run.run_id,
        )
        if record.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
            raise typer.Exit(
                _fail(
                    f"retraining run {record.dagster_run.run_id} ended "
                    f"{record.dagster_run.status.value}; the champion keeps serving"
                )
            )
        canary_s = record.end_time - visible_at if record.end_time else float("nan")
        timings.update(
            drift_visible_to_run_launched_s=round(launched_s, 1),
            drift_visible_to_new_version_serving_s=round(canary_s, 1),
        )
        challenger = _alias("challenger")
        step(
            "sensor",
            f"retraining launched {launched_s:.0f}s, and done {canary_s:.0f}s, after the "
            f"degradation was visible; window {tags.get('mlops/window')}",
        )
        _summarize_training()
        _summarize_serving(config)
        if challenger is None:
            timeline.add(
                "gate_rejected",
                "the retrained model did not clear the gate; champion unchanged",
                record.dagster_run.run_id,
            )
        else:
            timeline.add(
                "canary_started",
                f"v{challenger} takes {config.serving.canary_percent}% of customers",
                record.dagster_run.run_id,
                challenger,
            )
            first, last = plan.canary_days
            step(
                "canary",
                f"replaying the labelled days {first} .. {last} through the canary split (their actuals are known)",
            )
            replay_at = time.time()
            run_id = run_job("daily_scoring_job", _range_tags(first, last))
            timeline.add(
                "canary_traffic",
                f"{first} .. {last} scored through the split, actuals filled",
                run_id,
                challenger,
                last,
            )
            step("canary", "waiting for the daemon's canary sensor")
            record = loop.wait_for_run(
                instance,
                ("mlops/trigger", "canary"),
                None,
                replay_at - 1,
                300,
                lambda m: step("canary", m),
            )
            numbers = loop.describe_run(instance, record.dagster_run.run_id).get(
                "mlops/canary_numbers", "{}"
            )
            action = record.dagster_run.job_name.split("_")[0]
            timeline.add(f"canary_{action}", numbers, record.dagster_run.run_id, challenger)
            step(
                "canary",
                f"{record.dagster_run.job_name} {record.dagster_run.status.value}: {numbers}",
            )
        _summarize_serving(config)
        timeline.add("serving", json.dumps(_status_split(config)), version=_alias("champion") or "")
    finally:
        loop.stop_daemon(daemon)
    table = loop.write_timeline(settings, timeline)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    loop.save_report(settings, timings)
    _echo("timeline", f'mlops sql "select * from iceberg.{table} order by at"')
    for event in timeline.events:
        day = f" (data day {event['data_day']})" if event["data_day"] else ""
        version = f" v{event['model_version']}" if event["model_version"] else ""
        typer.echo(
            f"  {event['at']:%H:%M:%S} {event['event']}{version}{day}: {event['detail'][:150]}"
        )
    if not keep_serving:
        stop_server(settings, config.name)
        _echo(
            "serving",
            "model server stopped (use --keep-serving, or `mlops deploy`, to keep one up)",
        )
    _echo(
        "done",
        f"in {time.perf_counter() - started:.1f}s. `mlops status` shows the state; `make dev` opens the UI.",
    )


def _alias(alias: str) -> str | None:
    from mlops_assets.models.registry import alias_version, client

    return alias_version(client(get_settings()), "churn", alias)


def _status_split(config) -> dict:
    from mlops_assets.serving.rollout import current_spec

    spec = current_spec(get_settings(), config)
    return spec.split() if spec else {}


def _summarize_serving(config) -> None:
    from mlops_assets.serving.deployment import server_state

    split = ", ".join(f"v{v}: {p}%" for v, p in _status_split(config).items())
    state = server_state(get_settings(), config.name)
    where = state["endpoint"] if state else "not running"
    _echo("serving", f"{config.name}: {split or 'nothing deployed'} at {where}")


def _summarize_monitoring(config) -> None:
    from mlops_assets.monitoring.monitors import read_table

    table = read_table(get_settings(), config)
    status = table[table["metric"] == "status"]
    for monitor, group in status.groupby("monitor"):
        failed = sorted(str(d) for d in group.loc[group["breached"], "day"])
        shown = ", ".join(failed[:6]) + (" ..." if len(failed) > 6 else "")
        _echo("monitoring", f"{monitor}: {len(failed)}/{len(group)} days failed its check {shown}")


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
