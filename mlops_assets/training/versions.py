"""A registered model's versions as people ask about them: each with its aliases, lineage (the
DVC dataset, feature service, commit, KFP and Dagster runs), test metrics and whether it was
archived; and archiving a version nobody serves (an MLflow tag, recorded in the decision log)."""

from __future__ import annotations

from typing import Any

from mlops_assets.training.decisions import record
from mlops_assets.training.registry import CHALLENGER, CHAMPION, LINEAGE_TAGS, Registry, client

ARCHIVED_TAG = "mlops.archived"
SERVING_ALIASES = (CHAMPION, CHALLENGER)


class VersionError(RuntimeError):
    """No such version, or one that may not be archived (it serves)."""


class UnknownVersion(VersionError):
    """The registered model has no such version."""

    def __init__(self, model: str, version: str) -> None:
        super().__init__(f"model {model} has no version {version}")
        self.model = model


def _aliases(mlflow_client: Any, model: str) -> dict[str, list[str]]:
    from mlflow.exceptions import MlflowException

    try:
        registered = mlflow_client.get_registered_model(model)
    except MlflowException:
        return {}
    by_version: dict[str, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    return by_version


def _describe(mlflow_client: Any, version: Any, aliases: list[str]) -> dict[str, Any]:
    tags = dict(version.tags or {})
    metrics = {}
    if version.run_id:
        run = mlflow_client.get_run(version.run_id)
        metrics = {k: v for k, v in run.data.metrics.items() if "_test_" in k}
    return {
        "version": str(version.version),
        "aliases": sorted(aliases),
        "archived": tags.get(ARCHIVED_TAG) == "true",
        "created_at": int(version.creation_timestamp or 0),
        "run_id": version.run_id,
        "lineage": {tag: tags.get(tag) for tag in LINEAGE_TAGS},
        "metrics": metrics,
    }


def list_versions(registry: Registry, model: str) -> list[dict[str, Any]]:
    """Every version of the registered model, newest first (empty before the first one)."""
    mlflow_client = client(registry)
    aliases = _aliases(mlflow_client, model)
    versions = mlflow_client.search_model_versions(f"name = '{model}'")
    described = [_describe(mlflow_client, v, aliases.get(str(v.version), [])) for v in versions]
    return sorted(described, key=lambda v: int(v["version"]), reverse=True)


def archive(
    registry: Registry, model: str, version: str, actor: str, reason: str
) -> dict[str, Any]:
    """Mark a version archived; a version holding the champion or challenger alias serves (or is
    about to) and is refused."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(registry)
    try:
        mlflow_client.get_model_version(model, version)
    except MlflowException:
        raise UnknownVersion(model, version) from None
    holding = [a for a in _aliases(mlflow_client, model).get(version, []) if a in SERVING_ALIASES]
    if holding:
        raise VersionError(
            f"model {model} v{version} is the {' and '.join(holding)}: roll it back or promote "
            "another version before archiving it"
        )
    mlflow_client.set_model_version_tag(model, version, ARCHIVED_TAG, "true")
    record(registry, model, version, "archive", "archived", actor, reason, {})
    return {"model": model, "version": version, "archived": True}
