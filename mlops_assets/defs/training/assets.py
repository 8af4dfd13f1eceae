"""Per model config: the candidate (a KFP training run registered in MLflow), the promotion gate's
decision, the retraining job (dataset, training, gate, deployment) and its weekly schedule."""

import json
import subprocess
from typing import Any

import dagster as dg

from mlops_assets.defs.keys import (
    candidate_key,
    dataset_key,
    deployment_key,
    promotion_key,
    retrain_job_name,
)
from mlops_assets.model_config import ModelConfig, model_configs
from mlops_assets.processes import import_in_background
from mlops_assets.resources import ModelRegistryResource, PipelineRunnerResource
from mlops_assets.settings import PROJECT_ROOT, get_settings

GATE_CHECK = "candidate_cleared_the_gate"
# What the gate imports to load and score models from the registry (~4 s in a fresh run worker).
PROMOTION_IMPORTS = ("mlflow", "skops.io", "sklearn.ensemble", "mlops_assets.training.gate")


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def build_candidate(model: ModelConfig) -> dg.AssetsDefinition:
    @dg.asset(
        key=candidate_key(model),
        deps=[dataset_key(model)],
        group_name="training",
        kinds={"kubeflow", "mlflow", "scikitlearn"},
        description=(
            f"A new version of MLflow model '{model.registered_model}', trained by the KFP pipeline "
            f"on the current DVC version of the {model.feature_service} dataset."
        ),
    )
    def candidate(
        context: dg.AssetExecutionContext,
        pipeline_runner: PipelineRunnerResource,
        model_registry: ModelRegistryResource,
    ) -> dg.MaterializeResult:
        from mlops_assets.datasets.versioning import current_version
        from mlops_assets.pipelines.runner import PipelineFailed

        try:
            dataset = current_version(get_settings(), model.feature_service)
        except (FileNotFoundError, KeyError) as err:
            raise dg.Failure(
                f"no DVC version of dataset {model.feature_service}: materialize it first ({err})"
            ) from None
        lineage = {"git_commit": _git_commit(), "dagster_run_id": context.run_id}
        # The promotion step after this one loads models from the registry: its imports load
        # while this process waits on the pipeline.
        import_in_background(*PROMOTION_IMPORTS, low_priority=True)
        try:
            run = pipeline_runner.run(model, dataset.md5, lineage, model_registry.registry())
        except PipelineFailed as err:
            # The pipeline stops before its register step: the registry and the champion are untouched.
            raise dg.Failure(
                f"training pipeline for {model.name} failed; registry unchanged. {_last_line(err)}",
                metadata={"dvc_md5": dataset.md5},
            ) from None
        scores = run.metrics["model"]
        return dg.MaterializeResult(
            metadata={
                "model_version": run.model_version,
                "mlflow_run_id": run.mlflow_run_id,
                "kfp_run_id": run.kfp_run_id,
                "dvc_md5": dataset.md5,
                "model_uri": f"models:/{model.registered_model}/{run.model_version}",
                "pipeline_seconds": round(run.seconds, 1),
                **{f"test_{k}": round(v, 4) for k, v in scores.items() if k != "rows"},
                "baseline_test_roc_auc": round(run.metrics["baseline"]["roc_auc"], 4),
                "test_rows": int(scores["rows"]),
            }
        )

    return candidate


def build_promotion(model: ModelConfig) -> dg.AssetsDefinition:
    key = promotion_key(model)

    @dg.asset(
        key=key,
        deps=[candidate_key(model)],
        group_name="training",
        kinds={"mlflow"},
        description=(
            "The promotion gate's decision on the newest candidate: champion (first good version), "
            "challenger, or rejected; aliases move accordingly and every decision is logged."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                GATE_CHECK,
                asset=key,
                description="The newest candidate cleared the thresholds and the champion margin.",
            )
        ],
    )
    def promotion(context: dg.AssetExecutionContext, model_registry: ModelRegistryResource):
        from mlops_assets.training.gate import gate
        from mlops_assets.training.registry import client

        registry = model_registry.registry()
        name = model.registered_model
        versions = client(registry).search_model_versions(f"name = '{name}'")
        if not versions:
            raise dg.Failure(f"model {name} has no registered version to decide on")
        newest = str(max(int(v.version) for v in versions))
        decision = gate(registry, get_settings(), model, newest, actor=f"dagster:{context.run_id}")
        metadata = {
            k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in decision.metadata().items()
        }
        yield dg.MaterializeResult(metadata=metadata)
        yield dg.AssetCheckResult(
            check_name=GATE_CHECK,
            passed=decision.outcome != "rejected",
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"outcome": decision.outcome, "reasons": "; ".join(decision.reasons)},
        )

    return promotion


def build_retraining(model: ModelConfig) -> tuple[Any, dg.ScheduleDefinition]:
    job = dg.define_asset_job(
        name=retrain_job_name(model),
        selection=dg.AssetSelection.assets(
            dataset_key(model),
            candidate_key(model),
            promotion_key(model),
            deployment_key(model),
        ),
        description=(
            f"Build a fresh {model.feature_service} dataset, train {model.name} on it with KFP, "
            "register it, run the gate, and deploy: a new challenger goes out as a canary."
        ),
        tags={"mlops/model": model.name},
    )
    schedule = dg.ScheduleDefinition(
        name=f"retrain_{model.name}_schedule",
        job=job,
        cron_schedule=model.retrain_cron,
        execution_timezone="UTC",
    )
    return job, schedule


def _last_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__


@dg.definitions
def training() -> dg.Definitions:
    assets, jobs, schedules = [], [], []
    for model in model_configs().values():
        assets += [build_candidate(model), build_promotion(model)]
        job, schedule = build_retraining(model)
        jobs.append(job)
        schedules.append(schedule)
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules)
