"""Production serving: the deployment spec as a KServe v1beta1 InferenceService, applied with the
Kubernetes client.

Each predictor revision serves one pinned model version (`mlops serve <model> --version N`). With a
challenger, the revision pins the challenger and `canaryTrafficPercent` sends that share to it while
KServe keeps routing the rest to the previous rolled-out revision (the champion); promoting renders
the challenger alone at 100 %, rolling back renders the champion alone. No cluster runs here: the
manifest is validated against the kserve SDK models, and `apply` is tested against a stand-in
Kubernetes API server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_assets.model_config import ModelConfig
from mlops_assets.serving.deployment import DeploymentSpec

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
# KServe's modes; "Standard" is the newer name of RawDeployment (plain Deployments, no Knative).
MODES = ("Serverless", "RawDeployment", "Standard", "ModelMesh")
RAW_MODES = ("RawDeployment", "Standard")


def render(
    config: ModelConfig,
    spec: DeploymentSpec,
    namespace: str,
    image: str,
    deployment_mode: str = "Serverless",
) -> dict[str, Any]:
    """The InferenceService for `spec`, built from the kserve SDK models and serialized by them.
    The deployment mode is written out, not left to the cluster's default, so `validate` can
    refuse what that mode would silently ignore."""
    from kserve import (
        V1beta1InferenceService,
        V1beta1InferenceServiceSpec,
        V1beta1PredictorSpec,
    )
    from kserve.api_client import ApiClient as KserveApiClient
    from kubernetes.client import V1ObjectMeta

    canary = bool(spec.challenger_version) and spec.canary_percent > 0
    version = spec.challenger_version if canary else spec.champion_version
    isvc = V1beta1InferenceService(
        api_version=f"{GROUP}/{VERSION}",
        kind="InferenceService",
        metadata=V1ObjectMeta(
            name=config.name,
            namespace=namespace,
            labels={"app.kubernetes.io/part-of": "mlops-lakehouse", "mlops/model": config.name},
            annotations={
                "mlops/champion-version": spec.champion_version,
                "mlops/challenger-version": spec.challenger_version or "",
                "mlops/actor": spec.actor,
                "mlops/reason": spec.reason[:250],
                "serving.kserve.io/enable-prometheus-scraping": "true",
                DEPLOYMENT_MODE: deployment_mode,
            },
        ),
        spec=V1beta1InferenceServiceSpec(
            predictor=V1beta1PredictorSpec(
                containers=[_container(config, str(version), image)],
                min_replicas=1,
                max_replicas=4,
                canary_traffic_percent=spec.canary_percent if canary else None,
            )
        ),
    )
    return KserveApiClient().sanitize_for_serialization(isvc)


def _container(config: ModelConfig, version: str, image: str) -> Any:
    """The predictor container: `mlops serve <model> --version N` in the project image, secrets
    from the project's secret, ready when the model answers KServe's V2 readiness route."""
    from kubernetes.client import (
        V1Container,
        V1ContainerPort,
        V1EnvFromSource,
        V1EnvVar,
        V1HTTPGetAction,
        V1Probe,
        V1ResourceRequirements,
        V1SecretEnvSource,
    )

    from mlops_assets.settings import SECRET_NAME

    port = 8080
    return V1Container(
        name="kserve-container",
        image=image,
        args=[
            *("mlops", "serve", config.name, "--version", version),
            *("--host", "0.0.0.0", "--port", str(port)),
        ],
        env=[
            V1EnvVar(name="MLOPS_ENV", value="prod"),
            V1EnvVar(name="MLOPS_SERVED_VERSION", value=version),
        ],
        env_from=[V1EnvFromSource(secret_ref=V1SecretEnvSource(name=SECRET_NAME))],
        ports=[V1ContainerPort(container_port=port, protocol="TCP")],
        readiness_probe=V1Probe(
            http_get=V1HTTPGetAction(path=f"/v2/models/{config.name}/ready", port=port),
            period_seconds=5,
        ),
        resources=V1ResourceRequirements(
            requests={"cpu": "500m", "memory": "1Gi"}, limits={"cpu": "2", "memory": "2Gi"}
        ),
    )


def validate(manifest: dict[str, Any]) -> Any:
    """Build the kserve SDK's V1beta1InferenceService (and the Kubernetes models inside it) from the
    manifest: an unknown field, a wrong type or a missing required field is a ValueError naming the
    path; so is what KServe would accept and then silently ignore. Returns the typed object."""
    typed = _typed(manifest, "V1beta1InferenceService", "")
    if typed.api_version != f"{GROUP}/{VERSION}" or typed.kind != "InferenceService":
        raise ValueError(
            f"not a {GROUP}/{VERSION} InferenceService: {typed.api_version} {typed.kind}"
        )
    _check_semantics(typed)
    return typed


def _check_semantics(typed: Any) -> None:
    """What the SDK models let through but KServe would ignore or refuse at reconcile time."""
    annotations = (typed.metadata.annotations if typed.metadata else None) or {}
    mode = annotations.get(DEPLOYMENT_MODE, "Serverless")
    if mode not in MODES:
        raise ValueError(f"metadata.annotations.{DEPLOYMENT_MODE}: {mode!r} is not one of {MODES}")
    predictor = typed.spec.predictor
    canary = predictor.canary_traffic_percent
    if canary is not None and not 0 <= canary <= 100:
        raise ValueError(f"spec.predictor.canaryTrafficPercent: {canary} is not within 0..100")
    if canary is not None and mode in RAW_MODES:
        raise ValueError(
            f"spec.predictor.canaryTrafficPercent: KServe ignores it in {mode} mode (only "
            "Serverless mode splits traffic between revisions), so the challenger would take all "
            "traffic at once; serve canaries in Serverless mode"
        )
    low, high = predictor.min_replicas, predictor.max_replicas
    if low is not None and high is not None and low > high:
        raise ValueError(f"spec.predictor: minReplicas {low} is above maxReplicas {high}")


_NATIVE = {"str": str, "int": int, "float": (int, float), "bool": bool}


def _typed(data: Any, klass: str, path: str) -> Any:
    import kserve.models
    import kubernetes.client.models

    if data is None:
        return None
    if klass.startswith("list["):
        if not isinstance(data, list):
            raise ValueError(f"{path or '.'}: expected a list")
        return [_typed(v, klass[5:-1], f"{path}[{i}]") for i, v in enumerate(data)]
    if klass.startswith("dict("):
        if not isinstance(data, dict):
            raise ValueError(f"{path or '.'}: expected a map")
        inner = klass[5:-1].split(", ", 1)[1]
        return {k: _typed(v, inner, f"{path}.{k}") for k, v in data.items()}
    if klass == "object":
        return data
    if klass in _NATIVE:
        if not isinstance(data, _NATIVE[klass]) or (klass != "bool" and isinstance(data, bool)):
            raise ValueError(f"{path}: expected {klass}, got {data!r}")
        return data
    cls = getattr(kserve.models, klass, None) or getattr(kubernetes.client.models, klass)
    if not isinstance(data, dict):
        raise ValueError(f"{path or '.'}: expected an object ({klass})")
    by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(by_json))
    if unknown:
        raise ValueError(f"{path or '.'}: fields the {klass} model does not have: {unknown}")
    kwargs = {
        by_json[key]: _typed(value, cls.openapi_types[by_json[key]], f"{path}.{key}")
        for key, value in data.items()
    }
    try:
        return cls(**kwargs)
    except ValueError as err:  # the SDK's own required-field checks
        raise ValueError(f"{path or '.'}: {err}") from None


def apply(manifest: dict[str, Any], api_client: ApiClient | None = None) -> dict[str, Any]:
    """Create the InferenceService, or merge-patch it if it exists (what `kubectl apply` does for
    our fields). Uses the in-cluster config, else the kubeconfig, unless a client is given."""
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    api = k8s.CustomObjectsApi(api_client or _default_client())
    meta = manifest["metadata"]
    try:
        api.get_namespaced_custom_object(GROUP, VERSION, meta["namespace"], PLURAL, meta["name"])
    except ApiException as err:
        if err.status != 404:
            raise
        return api.create_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], PLURAL, manifest
        )
    patch = manifest
    if "canaryTrafficPercent" not in manifest["spec"]["predictor"]:
        # Merge patch: an absent key is kept, so clear the canary share explicitly.
        patch = {
            **manifest,
            "spec": {"predictor": {**manifest["spec"]["predictor"], "canaryTrafficPercent": None}},
        }
    return api.patch_namespaced_custom_object(
        GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], patch
    )


def delete(namespace: str, model: str, api_client: ApiClient | None = None) -> bool:
    """Remove the model's InferenceService; False if there was none."""
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    api = k8s.CustomObjectsApi(api_client or _default_client())
    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, model)
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def _default_client() -> ApiClient:
    """The in-cluster config, else the kubeconfig."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()
    return k8s.ApiClient()
