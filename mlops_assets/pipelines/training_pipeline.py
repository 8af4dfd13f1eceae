"""The training pipeline: fetch the DVC-versioned dataset, train, evaluate on the time-based
holdout, register in MLflow. Compile with `mlops pipeline compile` (a build output, not committed)."""

from pathlib import Path
from typing import NamedTuple

from kfp import dsl, kubernetes

from mlops_assets.pipelines.components import (
    evaluate_model,
    fetch_dataset,
    register_model,
    train_model,
)
from mlops_assets.settings import SECRET_NAME

# Cluster secrets, mounted as environment variables of every step (kfp-kubernetes); the keys are
# the variables' own names, so the predictor can take the same secret whole (`envFrom`). kfp.local
# ignores platform config: there the steps read the same variables from the local environment.
SECRET_ENV = {
    name: name
    for name in (
        "MLOPS_MLFLOW_TRACKING_URI",
        "MLOPS_MLFLOW_ARTIFACT_ROOT",
        "MLOPS_DECISIONS_DB_URL",
        "MLOPS_DVC_S3_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    )
}


def _with_secrets(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    kubernetes.use_secret_as_env(task, secret_name=SECRET_NAME, secret_key_to_env=SECRET_ENV)
    return task.set_display_name(name).set_caching_options(False)


class TrainingOutputs(NamedTuple):
    mlflow_run_id: str
    model_version: str
    metrics_json: str


@dsl.pipeline(
    name="model-training",
    description="Fetch a DVC dataset version, train a model and a baseline, evaluate, register in MLflow.",
)
def training_pipeline(dvc_md5: str, config_json: str, lineage_json: str) -> TrainingOutputs:
    data = _with_secrets(fetch_dataset(dvc_md5=dvc_md5), "fetch dataset (DVC)")
    trained = _with_secrets(
        train_model(dataset=data.outputs["dataset"], config_json=config_json), "train"
    )
    evaluated = _with_secrets(
        evaluate_model(
            dataset=data.outputs["dataset"],
            model=trained.outputs["model"],
            baseline=trained.outputs["baseline"],
            config_json=config_json,
        ),
        "evaluate on holdout",
    )
    registered = _with_secrets(
        register_model(
            dataset=data.outputs["dataset"],
            model=trained.outputs["model"],
            config_json=config_json,
            metrics_json=evaluated.outputs["metrics_json"],
            lineage_json=lineage_json,
            kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ),
        "register (MLflow)",
    )
    return TrainingOutputs(
        registered.outputs["mlflow_run_id"],
        registered.outputs["model_version"],
        evaluated.outputs["metrics_json"],
    )


def compile_pipeline(out: Path) -> Path:
    """The pipeline as KFP v2 YAML (what a cluster runs; kubeflow/training_pipeline.yaml)."""
    from kfp import compiler

    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(training_pipeline, str(out))
    return out
