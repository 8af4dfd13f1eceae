"""Run the KFP training pipeline: `kfp.local` (subprocess runner) in the embedded profile, a KFP
cluster through `kfp.Client` in production (`mlops_assets.resources` picks). One pipeline
definition, two runners. The steps find the registry in their environment: the local runner puts
it there, the cluster mounts it from its secrets."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_assets.model_config import ModelConfig
from mlops_assets.processes import environment
from mlops_assets.training.registry import Registry, client


class PipelineFailed(RuntimeError):
    pass


@dataclass
class TrainingRun:
    kfp_run_id: str
    mlflow_run_id: str
    model_version: str
    metrics: dict[str, dict[str, float]]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def pipeline_arguments(config: ModelConfig, dvc_md5: str, lineage: dict[str, str]) -> dict:
    return {
        "dvc_md5": dvc_md5,
        "config_json": config.model_dump_json(),
        "lineage_json": json.dumps(
            {**lineage, "dvc_md5": dvc_md5, "feature_service": config.feature_service}
        ),
    }


def run_locally(
    pipeline_root: str,
    config: ModelConfig,
    dvc_md5: str,
    lineage: dict[str, str],
    registry: Registry,
) -> TrainingRun:
    from kfp import local

    from mlops_assets.pipelines.training_pipeline import training_pipeline

    root = Path(pipeline_root)
    workspace = root / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root / "outputs"),
        workspace_root=str(workspace),
        raise_on_error=True,
    )
    arguments = pipeline_arguments(config, dvc_md5, lineage)
    started = time.perf_counter()
    # kfp.local prints each task's output; keep a copy to report the root cause of a failure.
    log = io.StringIO()
    try:
        with (
            environment(registry.environment()),  # the step subprocesses inherit it
            contextlib.redirect_stdout(_Tee(sys.stdout, log)),
        ):
            task = training_pipeline(**arguments)
    except RuntimeError as err:
        raise PipelineFailed(
            f"training pipeline failed: {root_cause(log.getvalue()) or err}"
        ) from err
    outputs = task.outputs
    # The id kfp.local gave the run, as the register step tagged it in MLflow.
    tags = client(registry).get_run(outputs["mlflow_run_id"]).data.tags
    return TrainingRun(
        kfp_run_id=tags["kfp_run_id"],
        mlflow_run_id=outputs["mlflow_run_id"],
        model_version=outputs["model_version"],
        metrics=json.loads(outputs["metrics_json"]),
        seconds=time.perf_counter() - started,
        extra={"pipeline_root": str(root / "outputs")},
    )


_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception|Failure)): (.+)$")


def root_cause(log: str) -> str | None:
    """The last exception a task printed, as 'ErrorType: message' (with its continuation lines)."""
    lines = log.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        match = _ERROR_LINE.match(lines[i])
        if match:
            rest = []
            for extra in lines[i + 1 : i + 4]:
                if not extra.strip() or " - " in extra[:20] or extra.startswith("-"):
                    break
                rest.append(extra.strip())
            return " ".join([f"{match.group(1)}: {match.group(2)}", *rest])
    return None


class _Tee(io.TextIOBase):
    def __init__(self, *streams: Any):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def run_on_cluster(
    host: str,
    experiment: str,
    timeout_seconds: int,
    config: ModelConfig,
    dvc_md5: str,
    lineage: dict[str, str],
    registry: Registry,
) -> TrainingRun:
    import kfp

    from mlops_assets.pipelines.training_pipeline import training_pipeline

    if not host:
        raise PipelineFailed("no Kubeflow Pipelines endpoint to submit to (MLOPS_KFP_HOST)")
    started = time.perf_counter()
    kfp_client = kfp.Client(host=host)
    run = kfp_client.create_run_from_pipeline_func(
        training_pipeline,
        arguments=pipeline_arguments(config, dvc_md5, lineage),
        experiment_name=experiment,
        enable_caching=False,
    )
    detail = kfp_client.wait_for_run_completion(run.run_id, timeout=timeout_seconds)
    if detail.state != "SUCCEEDED":
        raise PipelineFailed(f"KFP run {run.run_id} ended {detail.state}")
    # The register step tagged the MLflow run with this KFP run's id.
    mlflow_client = client(registry)
    runs = mlflow_client.search_runs(
        experiment_ids=[mlflow_client.get_experiment_by_name(config.name).experiment_id],
        filter_string=f"tags.kfp_run_id = '{run.run_id}'",
    )
    if not runs:
        raise PipelineFailed(f"KFP run {run.run_id} succeeded but registered no MLflow run")
    mlflow_run = runs[0]
    versions = mlflow_client.search_model_versions(f"run_id = '{mlflow_run.info.run_id}'")
    metrics = {
        kind: {
            k.split("_test_", 1)[1]: v
            for k, v in mlflow_run.data.metrics.items()
            if k.startswith(f"{kind}_test_")
        }
        for kind in ("model", "baseline")
    }
    return TrainingRun(
        kfp_run_id=run.run_id,
        mlflow_run_id=mlflow_run.info.run_id,
        model_version=str(versions[0].version),
        metrics=metrics,
        seconds=time.perf_counter() - started,
    )
