"""The stages of `mlops demo`, in order. Each returns the key figure of its line.

History is generated from the persisted world (drift switched on partway by default). Each
model's first version learns the labels known before the drift, is deployed, and scores the
following weeks; monitoring runs over them; the daemon's retraining sensor of a degraded model
launches its retraining job (dataset, KFP training, gate, canary deployment); its latest labelled
weeks are replayed through the canary split (the time-compressed stand-in for waiting on labels);
its canary sensor promotes or rolls back. A model without degradation keeps its champion.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_assets.defs.keys import retrain_job_name, retrain_sensor_name
from mlops_assets.defs.tags import TRIGGER_TAG
from mlops_assets.demo import runs
from mlops_assets.model_config import model_configs

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from mlops_assets.demo.console import DemoConsole, Stage
    from mlops_assets.demo.plan import Plan
    from mlops_assets.demo.timeline import Timeline
    from mlops_assets.model_config import ModelConfig
    from mlops_assets.settings import Settings
    from mlops_assets.training.registry import Registry

SENSOR_TIMEOUT_S = 900  # generous: a slow machine must not fail the story, only make it slow
CANARY_TIMEOUT_S = 600


def range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


@dataclass
class Demo:
    settings: Settings
    plans: dict[str, Plan]  # each model's calendar
    configs: list[ModelConfig]  # the models, in the order their stages run
    out: DemoConsole
    timeline: Timeline
    res: Any  # the environment's resources (mlops_assets.resources.open_resources)
    home: Path | None = None
    instance: Any = None
    daemon: subprocess.Popen | None = None
    timings: dict[str, float] = field(default_factory=dict)
    background: Any = None  # the set-up that runs beside the lakehouse stage
    background_ready: Any = None
    instance_created: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    marks: dict[str, float] = field(default_factory=dict)  # epoch seconds of stage boundaries
    current: int = 0  # the model the per-model stages act on

    # -- helpers -----------------------------------------------------------------------------

    @property
    def config(self) -> ModelConfig:
        return self.configs[self.current]

    @property
    def plan(self) -> Plan:
        return self.plans[self.config.name]

    def use(self, config: ModelConfig) -> Demo:
        self.current = self.configs.index(config)
        return self

    def each(self, step: Any, stage: Stage, configs: list[ModelConfig] | None = None) -> str:
        """Run a per-model stage for each model (all by default); one clause per model."""
        figures = []
        for config in configs or self.configs:
            self.use(config)
            figure = step(stage)
            figures.append(figure if len(self.configs) == 1 else f"{config.name}: {figure}")
        return "\n           ".join(figures)

    def record(self, event: str, detail: str, *args: Any, **kwargs: Any) -> None:
        """A timeline event of the current model (Timeline.add's arguments)."""
        self.timeline.add(event, detail, *args, **kwargs, model=self.config.name)

    def mark(self, name: str, now: bool = False) -> float:
        """Epoch seconds of the current model's stage boundary `name` (set it with now=True)."""
        if now:
            self.marks[f"{self.config.name}:{name}"] = time.time()
        return self.marks[f"{self.config.name}:{name}"]

    def model_only(self, job: str) -> list[list[str]]:
        """`job`'s asset keys of every other configured model (also those `--model` leaves out)."""
        return runs.other_models_keys(job, self.config.name, list(model_configs()))

    def run_days(self, job: str, stage: Stage, first: dt.date, last: dt.date) -> str:
        """Run a daily job over `first` .. `last` for this model only."""
        return runs.run_job(
            self.instance, job, stage, range_tags(first, last), exclude=self.model_only(job)
        )

    @property
    def registry(self) -> Registry:
        return self.res.model_registry.registry()

    def alias(self, alias: str) -> str | None:
        from mlops_assets.training.registry import alias_version, client

        return alias_version(client(self.registry), self.config.registered_model, alias)

    def test_auc(self, version: str) -> float:
        from mlops_assets.training.registry import client

        mlflow_client = client(self.registry)
        run_id = mlflow_client.get_model_version(self.config.registered_model, version).run_id
        return mlflow_client.get_run(run_id).data.metrics.get("model_test_roc_auc", float("nan"))

    def serving_line(self) -> str:
        from mlops_assets.serving.rollout import current_spec

        spec = current_spec(self.registry, self.config)
        split = ", ".join(f"v{v} {p}%" for v, p in (spec.split() if spec else {}).items())
        state = self.res.deployer.state(self.config.name)
        return f"serving {split or 'nothing'} at {state['endpoint'] if state else 'no server'}"

    # -- stages ------------------------------------------------------------------------------

    def setup(self, stage: Stage) -> str:
        from concurrent.futures import ThreadPoolExecutor

        import dagster as dg

        from mlops_assets.defs.dbt.project import prepare_manifest
        from mlops_assets.demo.timeline import reset
        from mlops_assets.processes import import_in_background

        reset(self.settings.data_dir)
        if self.settings.on_services:
            from mlops_assets.service_stores import reset_all

            stage.update(detail="fresh SeaweedFS node, PostgreSQL databases, Redis database")
            reset_all(self.settings)
        self.home = runs.ensure_dagster_home(self.settings)
        stage.update(detail="dbt manifest, Dagster storage")
        # Nothing before training needs MLflow or the daemon: both start beside the lakehouse
        # run; `ready()` waits for them.
        self.background = ThreadPoolExecutor(1, thread_name_prefix="demo-setup")
        self.background_ready = self.background.submit(self._start_registry_and_daemon)
        # What the training stage imports (skops alone walks all of scikit-learn: ~4 s) loads
        # while the lakehouse run mostly waits on dbt.
        import_in_background(*runs.LATER_IMPORTS)
        with ThreadPoolExecutor(1) as pool:
            parsed = pool.submit(prepare_manifest)  # a dbt subprocess, skipped when up to date
            # The instance's storages exist before the daemon starts (two processes creating
            # them at once can leave two alembic heads): the daemon starts after this.
            self.instance = dg.DagsterInstance.get()
            self.instance_created.set()
            parsed.result()
        drift = self.plan.world.drift_from
        self.timeline.add(  # the world's, not a model's
            "drift_switched_on" if drift else "no_drift",
            self.plan.world.drifts(),
            day=drift,
        )
        return f"Dagster instance {self.home}; MLflow and the daemon starting beside the next stage"

    def _start_registry_and_daemon(self) -> None:
        from mlops_assets.training.registry import create_storage

        # MLflow's storage before the daemon's sensors or the first registration read it.
        create_storage(self.registry)
        self.instance_created.wait()
        if self.cancelled.is_set():
            return
        self.daemon = runs.start_daemon(
            self.home, self.settings.data_dir / "logs" / "dagster_daemon.log"
        )

    def ready(self) -> None:
        """MLflow's storage exists and the daemon has been started (raises what failed)."""
        if self.background_ready is not None:
            self.background_ready.result()

    def stop_background(self) -> None:
        """Let a start under way finish (so its daemon can be stopped), then stop the thread."""
        if self.background is not None:
            self.cancelled.set()  # a demo that ends before training needs no daemon
            self.instance_created.set()
            self.background.shutdown(wait=True)

    def lakehouse(self, stage: Stage) -> str:
        plan = self.plan
        # The training set is built by the training run itself, with its label cutoff.
        run_id = runs.run_job(
            self.instance,
            "daily_lakehouse_job",
            stage,
            range_tags(plan.first_day, plan.last_day),
            exclude=[["datasets", c.feature_service] for c in model_configs().values()],
        )
        days = (plan.last_day - plan.first_day).days + 1
        self.timeline.add(
            "lakehouse_built", f"{days} landing days, dbt, features", run_id, day=plan.last_day
        )
        labels = []
        for config in self.configs:
            counts = self.res.warehouse.query(
                f"select count(*) as n, avg({config.label}) as rate from {config.label_table}"
            ).iloc[0]
            labels.append(
                f"{config.label_table}: {int(counts['n']):,} labels (rate {counts['rate']:.1%})"
            )
        return f"{days} days landed; " + "; ".join(labels)

    def first_model(self, stage: Stage) -> str:
        known_by = self.plan.first_model_labels_by
        stage.update(detail="MLflow storage, daemon")
        self.ready()
        # The model server starts its imports now, niced, on what the training pipeline leaves
        # idle (its single-process steps); the deployment at the end of the run then only loads
        # the model into it.
        self.res.deployer.standby(self.config)
        run_id = runs.run_job(
            self.instance,
            retrain_job_name(self.config),
            stage,
            {"mlops/reason": "first model"},
            self._dataset_config(known_by),
        )
        version = self.alias("champion")
        if version is None:
            raise runs.RunFailed("the first model did not clear the gate; nothing to serve")
        self.record(
            "trained_and_deployed", "first champion, serving 100%", run_id, version, known_by
        )
        return (
            f"v{version} champion on labels known by {known_by} (test ROC AUC "
            f"{self.test_auc(version):.3f}); {self.serving_line()}"
        )

    def _dataset_config(self, known_by: dt.date) -> dict:
        from mlops_assets.defs.keys import dataset_run_config

        return dataset_run_config(self.config, known_by)

    def scoring(self, stage: Stage) -> str:
        first, last = self.plan.score_days
        run_id = self.run_days("daily_scoring_job", stage, first, last)
        self.record("scored", f"{first} .. {last}", run_id, self.alias("champion"), last)
        table = f"iceberg.predictions.{self.config.name}_daily"
        rows, days, labelled = self.res.warehouse.analyst_sql(
            f"select count(*), count(distinct prediction_date), count(actual) from {table}"
        ).iloc[0]
        return f"{days} days, {rows:,} predictions ({labelled:,} with actuals) in {table}"

    def monitoring(self, stage: Stage) -> str:
        from mlops_assets.demo.timeline import degradation_summary
        from mlops_assets.monitoring.results import read_table

        first, last = self.plan.monitor_days
        self.mark("monitoring_started", now=True)
        run_id = self.run_days("daily_monitoring_job", stage, first, last)
        self.mark("monitoring_ended", now=True)
        catalog = self.res.lakehouse.catalog()
        degraded_from, windows = degradation_summary(catalog, self.config)
        self.record(
            "monitored",
            f"degraded day runs: {windows or 'none'}",
            run_id,
            self.alias("champion") or "",
            degraded_from,
        )
        status = read_table(catalog, self.config).query("metric == 'status'")
        failed = status.groupby("monitor")["breached"].sum()
        counts = ", ".join(f"{m} {int(n)}" for m, n in failed.items())
        return f"{first} .. {last}: failed days per check: {counts}"

    def expects_retraining(self) -> bool:
        from mlops_assets.monitoring.decisions import retrain_decision
        from mlops_assets.monitoring.results import read_table

        table = read_table(self.res.lakehouse.catalog(), self.config)
        monitoring = self.config.monitoring
        decision = retrain_decision(
            table, monitoring.consecutive_days, set(), None, 0, dt.datetime.now(dt.UTC)
        )
        return decision.launch

    def no_degradation(self, stage: Stage) -> str:
        """A clean world: the daemon's sensor evaluates the monitoring results and stays quiet."""
        name = retrain_sensor_name(self.config)
        deadline = time.monotonic() + SENSOR_TIMEOUT_S
        tick = None
        while tick is None or tick.status.value != "SKIPPED":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the daemon's {name} sensor did not evaluate in time")
            stage.update(detail="waiting for the sensor's tick")
            time.sleep(0.5)
            tick = runs.last_sensor_tick(self.instance, name, self.mark("monitoring_ended"))
            if tick is not None and tick.status.value == "SUCCESS":
                raise runs.RunFailed(f"{name} launched a retraining on a world without drift")
        reason = "; ".join(tick.skip_reason.splitlines()) if tick.skip_reason else "skipped"
        self.record("no_degradation", f"champion kept; sensor: {reason}")
        return f"no degradation; champion kept (sensor: {reason})"

    def retraining(self, stage: Stage) -> str:
        from mlops_assets.demo.timeline import conclusive_at, describe_run

        record = runs.wait_for_run(
            self.instance,
            (TRIGGER_TAG, "degradation"),
            self.mark("monitoring_started") - 1,
            SENSOR_TIMEOUT_S,
            stage,
            job=retrain_job_name(self.config),
        )
        run = record.dagster_run
        tags = describe_run(self.instance, run.run_id)
        window = tags.get("mlops/window", "")
        visible_at = conclusive_at(self.res.lakehouse.catalog(), self.config, window)
        launched_s = record.create_timestamp.timestamp() - visible_at
        self.record(
            "retraining_launched",
            f"{tags.get('mlops/reason', '')}; launched {launched_s:.0f}s after the conclusive "
            f"day's check failed; labels known by {tags.get('mlops/labels_known_by')}",
            run.run_id,
        )
        if run.status.value != "SUCCESS":
            raise runs.RunFailed(
                f"retraining run {run.run_id} ended {run.status.value}; the champion keeps serving"
            )
        serving_s = record.end_time - visible_at if record.end_time else float("nan")
        self.timings.update(
            drift_visible_to_run_launched_s=round(launched_s, 1),
            drift_visible_to_new_version_serving_s=round(serving_s, 1),
        )
        challenger = self.alias("challenger")
        if challenger is None:
            self.record("gate_rejected", "retrained model rejected; champion kept", run.run_id)
            return f"launched {launched_s:.0f}s after visible; the gate rejected it, champion kept"
        self.record(
            "canary_started",
            f"v{challenger} takes {self.config.serving.canary_percent}% of customers",
            run.run_id,
            challenger,
        )
        return (
            f"launched {launched_s:.0f}s after the degradation was visible "
            f"({tags.get('mlops/window')}); v{challenger} (test ROC AUC "
            f"{self.test_auc(challenger):.3f}) serving as a {self.config.serving.canary_percent}% "
            f"canary {serving_s:.0f}s after"
        )

    def canary(self, stage: Stage) -> str:
        from mlops_assets.demo.timeline import describe_run

        first, last = self.plan.canary_days
        challenger = self.alias("challenger")
        replay_at = time.time()
        run_id = self.run_days("daily_scoring_job", stage, first, last)
        self.record(
            "canary_traffic", f"{first} .. {last} replayed through the split", run_id, challenger
        )
        record = runs.wait_for_run(
            self.instance, (TRIGGER_TAG, "canary"), replay_at - 1, CANARY_TIMEOUT_S, stage
        )
        run = record.dagster_run
        numbers = json.loads(
            describe_run(self.instance, run.run_id).get("mlops/canary_numbers", "{}")
        )
        action = run.job_name.split("_")[0]
        self.record(f"canary_{action}", json.dumps(numbers), run.run_id, challenger)
        if run.status.value != "SUCCESS":
            raise runs.RunFailed(f"{run.job_name} run {run.run_id} ended {run.status.value}")
        self.record("serving", self.serving_line(), version=self.alias("champion") or "")
        verb = "promoted" if action == "promote" else "rolled back"
        return (
            f"{verb} v{challenger}: ROC AUC {numbers.get('challenger_roc_auc')} vs champion's "
            f"{numbers.get('champion_roc_auc')} on {numbers.get('challenger_labelled', 0):,} / "
            f"{numbers.get('champion_labelled', 0):,} labelled rows; {self.serving_line()}"
        )
