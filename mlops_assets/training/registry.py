"""The MLflow tracking server and model registry, and where the promotion decisions are logged: a
`Registry` names them (SQLite and a local artifact folder embedded, PostgreSQL and S3 in
production; `mlops_assets.resources` picks). Versions move between registry aliases (`challenger`,
`champion`), never deprecated stages.

Models are stored with skops, never pickle, and loaded only after skops lists every type the file
would instantiate and each is one skops trusts by default (sklearn, numpy, scipy basics) or one of
`TRUSTED_TYPES` below: the project's list, not the one a model file carries about itself. A model
that needs any other type is refused before anything in it runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from mlops_assets.model_config import ModelConfig

CHAMPION, CHALLENGER = "champion", "challenger"
# Types our pipelines contain beyond skops' defaults (the histogram gradient boosting's trees, the
# encoders' dtype and array check). Adding one is a reviewed change.
TRUSTED_TYPES = (
    "functools.partial",
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
)
MODEL_FILE = "model.skops"


class UnsafeModelError(RuntimeError):
    """A model file that is not skops, or would instantiate a type nobody reviewed."""


LINEAGE_TAGS = ("dvc_md5", "feature_service", "git_commit", "kfp_run_id", "dagster_run_id")


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    artifact_root: str
    decisions_url: str  # SQLAlchemy URL of the decision log (mlops_assets/training/promotion.py)

    @classmethod
    def from_environment(cls) -> Registry:
        """Inside a pipeline step: the URIs the runner (kfp.local) or the cluster's secrets put in
        the step's environment."""
        missing = [name for name in ENV_VARS.values() if not os.environ.get(name)]
        if missing:
            raise RuntimeError(f"the registry is not configured for this process: set {missing}")
        return cls(**{field: os.environ[name] for field, name in ENV_VARS.items()})

    def environment(self) -> dict[str, str]:
        return {name: getattr(self, field) for field, name in ENV_VARS.items()}


# How a registry travels to a pipeline step (the same names the cluster's secrets mount).
ENV_VARS = {
    "tracking_uri": "MLOPS_MLFLOW_TRACKING_URI",
    "artifact_root": "MLOPS_MLFLOW_ARTIFACT_ROOT",
    "decisions_url": "MLOPS_DECISIONS_DB_URL",
}


def local_folder(uri: str) -> Path | None:
    """The folder a sqlite:/// or file:// URI lives in (created on first use), else None."""
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
    elif uri.startswith("file://"):
        folder = Path(uri.removeprefix("file://"))
    else:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def client(registry: Registry) -> MlflowClient:
    import mlflow
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    local_folder(registry.tracking_uri)
    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_registry_uri(registry.tracking_uri)
    return MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)


def create_storage(registry: Registry) -> None:
    """MLflow's tables (its alembic migrations, ~3 s on a new SQLite file) in a process of their
    own: alembic keeps its migration context process-wide, so migrating beside another thread
    that runs alembic (Dagster creating a run's event-log shard) breaks both. A no-op on a
    registry that exists."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "mlops_assets.training.registry"],
        env={**os.environ, **registry.environment()},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"could not create MLflow's storage: {lines[-1] if lines else '?'}")


def experiment_id(mlflow_client: MlflowClient, name: str, registry: Registry) -> str:
    """The model's experiment, created with an explicit artifact location (MLflow's default is a
    folder in the working directory)."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return mlflow_client.create_experiment(
        name, artifact_location=f"{registry.artifact_root}/{name}"
    )


def log_and_register(
    registry: Registry,
    estimator: Any,
    input_example: pd.DataFrame,
    config: ModelConfig,
    metrics: dict[str, dict[str, float]],
    lineage: dict[str, str],
    documents: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """One MLflow run with params, metrics, the model (signature, input example) and lineage tags;
    registers a new version of the config's model. Returns (run id, version)."""
    import mlflow
    from mlflow.models import infer_signature

    from mlops_assets.training.thresholds import decision_threshold

    threshold = decision_threshold(config, estimator)  # `auto`: the one chosen when trained
    threshold_fixed = config.decision_threshold != "auto"
    mlflow_client = client(registry)
    exp = experiment_id(mlflow_client, config.name, registry)
    tags = {k: str(v) for k, v in lineage.items() if v is not None}
    with mlflow.start_run(
        experiment_id=exp, run_name=f"{config.name}-{tags.get('dvc_md5', '')[:8]}"
    ) as run:
        mlflow.log_params(
            {
                "algorithm": config.algorithm,
                "feature_service": config.feature_service,
                "decision_threshold": threshold,
                "decision_threshold_mode": "fixed" if threshold_fixed else "auto",
                **{f"param_{k}": v for k, v in config.params.model_dump().items()},
            }
        )
        for kind, values in metrics.items():
            mlflow.log_metrics({f"{kind}_test_{k}": v for k, v in values.items()})
        mlflow.set_tags(tags)
        for name, document in (documents or {}).items():
            mlflow.log_dict(document, name)  # e.g. the tuning trials
        scores = estimator.predict_proba(input_example)[:, 1]
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=infer_signature(input_example, scores),
            input_example=input_example,
            pyfunc_predict_fn="predict_proba",
            serialization_format="skops",
            skops_trusted_types=list(TRUSTED_TYPES),
            # Known, so MLflow need not load the model in a subprocess to infer them.
            pip_requirements=_requirements(),
            registered_model_name=config.registered_model,
        )
    version = str(info.registered_model_version)
    for key, value in {**tags, "decision_threshold": str(threshold)}.items():
        mlflow_client.set_model_version_tag(config.registered_model, version, key, value)
    return run.info.run_id, version


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("scikit-learn", "skops", "pandas", "numpy")]


def alias_version(mlflow_client: MlflowClient, model: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow_client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def save_estimator(estimator: Any, path: Path) -> None:
    """A fitted estimator as a skops file (how pipeline steps hand models to each other)."""
    import skops.io

    skops.io.dump(estimator, path)


def load_estimator(path: Path) -> Any:
    """A skops file's estimator, after checking every type it would create against the project's
    trusted list; raises UnsafeModelError (and runs nothing) otherwise."""
    import skops.io

    untrusted = skops.io.get_untrusted_types(file=path)
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise UnsafeModelError(
            f"{path} would instantiate types outside the trusted list: {refused}; refusing to load"
        )
    return skops.io.load(path, trusted=[t for t in untrusted if t in TRUSTED_TYPES])


def download_model(registry: Registry, model: str, version: str) -> Path:
    """The registered version's MLflow model folder, local (downloaded once per process)."""
    client(registry)
    return Path(_download(registry.tracking_uri, model, version))


def load_registered(local: Path) -> Any:
    """The estimator of a downloaded MLflow sklearn model, loaded safely (never a pickle)."""
    import yaml

    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"].get("sklearn", {})
    if flavor.get("serialization_format") != "skops":
        fmt = flavor.get("serialization_format", "unknown")
        raise UnsafeModelError(
            f"{local} is stored as {fmt!r}, not skops: loading it would execute a pickle; "
            "re-register the model"
        )
    return load_estimator(local / flavor.get("pickled_model", MODEL_FILE))


def load_model(registry: Registry, model: str, version: str) -> Any:
    """A registered version's estimator. Versions are immutable, so a process keeps the few it
    loaded (a daily scoring run over many days loads each once)."""
    client(registry)
    return _load(registry.tracking_uri, model, version)


@lru_cache(maxsize=8)
def _download(uri: str, model: str, version: str) -> str:
    import mlflow

    return mlflow.artifacts.download_artifacts(f"models:/{model}/{version}")


@lru_cache(maxsize=8)
def _load(uri: str, model: str, version: str) -> Any:
    return load_registered(Path(_download(uri, model, version)))


if __name__ == "__main__":  # `python -m mlops_assets.training.registry`: see create_storage
    client(Registry.from_environment()).search_experiments()
