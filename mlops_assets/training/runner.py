"""Run the KFP training pipeline: `kfp.local` (subprocess runner) in the embedded profile, a KFP
cluster through `kfp.Client` in prod. One pipeline definition, two runners."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from mlops_assets.model_config import ModelConfig
from mlops_assets.settings import Environment, Settings


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


def run_training(
    settings: Settings, config: ModelConfig, dvc_md5: str, lineage: dict[str, str]
) -> TrainingRun:
    arguments = {
        "dvc_md5": dvc_md5,
        "config_json": config.model_dump_json(),
        "lineage_json": json.dumps(
            {**lineage, "dvc_md5": dvc_md5, "feature_service": config.feature_service}
        ),
    }
    if settings.env is Environment.PROD:
        return _run_on_cluster(settings, config, arguments)
    return _run_locally(settings, arguments)


def _run_locally(settings: Settings, arguments: dict[str, str]) -> TrainingRun:
    from kfp import local

    from mlops_assets.pipelines.training_pipeline import training_pipeline

    root = settings.data_dir / "kfp"
    workspace = root / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root / "outputs"),
        workspace_root=str(workspace),
        raise_on_error=True,
    )
    started = time.perf_counter()
    # kfp.local prints each task's output; keep a copy to report the root cause of a failure.
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(_Tee(sys.stdout, log)):
            task = training_pipeline(**arguments)
    except RuntimeError as err:
        raise PipelineFailed(
            f"training pipeline failed: {root_cause(log.getvalue()) or err}"
        ) from err
    outputs = task.outputs
    from mlops_assets.training.registry import client

    # The id kfp.local gave the run, as the register step tagged it in MLflow.
    tags = client(settings).get_run(outputs["mlflow_run_id"]).data.tags
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


def _run_on_cluster(
    settings: Settings, config: ModelConfig, arguments: dict[str, str]
) -> TrainingRun:
    import kfp

    from mlops_assets.pipelines.training_pipeline import training_pipeline
    from mlops_assets.training.registry import client

    if not settings.kfp_host:
        raise PipelineFailed(
            "MLOPS_KFP_HOST is not set: no Kubeflow Pipelines endpoint to submit to"
        )
    started = time.perf_counter()
    kfp_client = kfp.Client(host=settings.kfp_host)
    run = kfp_client.create_run_from_pipeline_func(
        training_pipeline, arguments=arguments, experiment_name=config.name, enable_caching=False
    )
    detail = kfp_client.wait_for_run_completion(run.run_id, timeout=6 * 3600)
    if detail.state != "SUCCEEDED":
        raise PipelineFailed(f"KFP run {run.run_id} ended {detail.state}")
    # The register step tagged the MLflow run with this KFP run's id.
    runs = client(settings).search_runs(
        experiment_ids=[client(settings).get_experiment_by_name(config.name).experiment_id],
        filter_string=f"tags.kfp_run_id = '{run.run_id}'",
    )
    if not runs:
        raise PipelineFailed(f"KFP run {run.run_id} succeeded but registered no MLflow run")
    mlflow_run = runs[0]
    versions = client(settings).search_model_versions(f"run_id = '{mlflow_run.info.run_id}'")
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
