import json
import subprocess

import dagster as dg

from mlops_assets.defs.training.resources import TrainingResource
from mlops_assets.model_config import ModelConfig
from mlops_assets.settings import PROJECT_ROOT

GATE_CHECK = "candidate_cleared_the_gate"


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


def build_model_assets(config: ModelConfig) -> tuple[list, list, list]:
    """The candidate and promotion assets of one model, its retraining job and schedule."""
    dataset_key = dg.AssetKey(["datasets", config.feature_service])
    candidate_key = dg.AssetKey(["models", config.name, "candidate"])
    promotion_key = dg.AssetKey(["models", config.name, "promotion"])

    @dg.asset(
        key=candidate_key,
        deps=[dataset_key],
        group_name="training",
        kinds={"kubeflow", "mlflow", "scikitlearn"},
        description=(
            f"A new version of MLflow model '{config.registered_model}', trained by the KFP pipeline on "
            f"the current DVC version of the {config.feature_service} dataset."
        ),
    )
    def candidate(
        context: dg.AssetExecutionContext, training: TrainingResource
    ) -> dg.MaterializeResult:
        from mlops_assets.datasets.versioning import current_version
        from mlops_assets.training.runner import PipelineFailed, run_training

        settings = training.settings()
        try:
            dataset = current_version(settings, config.feature_service)
        except (FileNotFoundError, KeyError) as err:
            raise dg.Failure(
                f"no DVC version of dataset {config.feature_service}: materialize it first ({err})"
            ) from None
        lineage = {"git_commit": _git_commit(), "dagster_run_id": context.run_id}
        try:
            run = run_training(settings, config, dataset.md5, lineage)
        except PipelineFailed as err:
            # The pipeline stops before its register step: the registry and the champion are untouched.
            raise dg.Failure(
                f"training pipeline for {config.name} failed; registry unchanged. {_last_line(err)}",
                metadata={"dvc_md5": dataset.md5},
            ) from None
        model = run.metrics["model"]
        return dg.MaterializeResult(
            metadata={
                "model_version": run.model_version,
                "mlflow_run_id": run.mlflow_run_id,
                "kfp_run_id": run.kfp_run_id,
                "dvc_md5": dataset.md5,
                "model_uri": f"models:/{config.registered_model}/{run.model_version}",
                "pipeline_seconds": round(run.seconds, 1),
                **{f"test_{k}": round(v, 4) for k, v in model.items() if k != "rows"},
                "baseline_test_roc_auc": round(run.metrics["baseline"]["roc_auc"], 4),
                "test_rows": int(model["rows"]),
            }
        )

    @dg.asset(
        key=promotion_key,
        deps=[candidate_key],
        group_name="training",
        kinds={"mlflow"},
        description=(
            "The promotion gate's decision on the newest candidate: champion (first good version), "
            "challenger, or rejected; aliases move accordingly and every decision is logged."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                GATE_CHECK,
                asset=promotion_key,
                description="The newest candidate cleared the thresholds and the champion margin.",
            )
        ],
    )
    def promotion(context: dg.AssetExecutionContext, training: TrainingResource):
        from mlops_assets.training.promotion import gate
        from mlops_assets.training.registry import client

        settings = training.settings()
        versions = client(settings).search_model_versions(f"name = '{config.registered_model}'")
        if not versions:
            raise dg.Failure(
                f"model {config.registered_model} has no registered version to decide on"
            )
        newest = str(max(int(v.version) for v in versions))
        decision = gate(settings, config, newest, actor=f"dagster:{context.run_id}")
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

    retrain_job = dg.define_asset_job(
        name=f"retrain_{config.name}",
        selection=dg.AssetSelection.assets(
            dataset_key,
            candidate_key,
            promotion_key,
            dg.AssetKey(["deployments", config.name, "endpoint"]),
        ),
        description=(
            f"Build a fresh {config.feature_service} dataset, train {config.name} on it with KFP, "
            "register it, run the gate, and deploy: a new challenger goes out as a canary."
        ),
        tags={"mlops/model": config.name},
    )
    schedule = dg.ScheduleDefinition(
        name=f"retrain_{config.name}_schedule",
        job=retrain_job,
        cron_schedule=config.retrain_cron,
        execution_timezone="UTC",
    )
    return [candidate, promotion], [retrain_job], [schedule]


def _last_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__
