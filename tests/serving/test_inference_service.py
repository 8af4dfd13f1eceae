"""Production serving objects: the InferenceService validated against the kserve SDK models, and the
apply path exercised against a stand-in Kubernetes API server (no cluster can run here)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client as k8s

from mlops_assets.model_config import model_configs
from mlops_assets.serving.deployment import DeploymentSpec
from mlops_assets.serving.inference_service import DEPLOYMENT_MODE, apply, render, validate

CONFIG = model_configs()["churn"]
CANARY = DeploymentSpec(
    model="churn", champion_version="3", challenger_version="4", canary_percent=20, actor="t"
)
STABLE = DeploymentSpec(model="churn", champion_version="4", actor="t")
# What the prod settings give (settings.namespace, settings.image).
NAMESPACE, IMAGE = "mlops", "ghcr.io/lakehouse-mlops/mlops:test"


def _render(spec: DeploymentSpec) -> dict:
    return render(CONFIG, spec, NAMESPACE, IMAGE)


def test_canary_manifest_validates_and_pins_the_challenger():
    manifest = _render(CANARY)
    typed = validate(manifest)
    assert typed.spec.predictor.canary_traffic_percent == 20
    container = typed.spec.predictor.containers[0]
    assert container.args[:5] == ["mlops", "serve", "churn", "--version", "4"]
    assert container.image == IMAGE and typed.metadata.namespace == NAMESPACE
    assert (
        manifest["apiVersion"] == "serving.kserve.io/v1beta1"
        and manifest["kind"] == "InferenceService"
    )
    assert manifest["metadata"]["annotations"]["mlops/champion-version"] == "3"
    assert (
        manifest["spec"]["predictor"]["containers"][0]["readinessProbe"]["httpGet"]["path"]
        == "/v2/models/churn/ready"
    )


def test_stable_manifest_has_no_canary_share():
    manifest = _render(STABLE)
    validate(manifest)
    assert "canaryTrafficPercent" not in manifest["spec"]["predictor"]
    assert "--version" in manifest["spec"]["predictor"]["containers"][0]["args"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m["spec"]["predictor"].update(canaryTrafficPercnt=10), "canaryTrafficPercnt"),
        (lambda m: m["spec"]["predictor"].update(canaryTrafficPercent="20"), "expected int"),
        (lambda m: m["spec"]["predictor"]["containers"][0].pop("name"), "name"),
        (lambda m: m.update(kind="Deployment"), "not a serving.kserve.io/v1beta1"),
    ],
    ids=["unknown field", "wrong type", "missing required", "wrong kind"],
)
def test_validation_rejects_what_the_sdk_models_reject(mutate, message):
    manifest = _render(STABLE)
    mutate(manifest)
    with pytest.raises(ValueError, match=message):
        validate(manifest)


def test_the_deployment_mode_is_explicit_and_a_canary_needs_serverless():
    assert _render(CANARY)["metadata"]["annotations"][DEPLOYMENT_MODE] == "Serverless"
    # RawDeployment (and its new name, Standard) accept canaryTrafficPercent and ignore it: the
    # challenger would take all traffic. Refused, with the reason.
    for mode in ("RawDeployment", "Standard"):
        with pytest.raises(ValueError, match=f"ignores it in {mode} mode"):
            validate(render(CONFIG, CANARY, NAMESPACE, IMAGE, mode))
        validate(render(CONFIG, STABLE, NAMESPACE, IMAGE, mode))  # no canary: fine
    with pytest.raises(ValueError, match="'Knative' is not one of"):
        validate(render(CONFIG, STABLE, NAMESPACE, IMAGE, "Knative"))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.update(canaryTrafficPercent=120), "not within 0..100"),
        (lambda p: p.update(minReplicas=5, maxReplicas=2), "minReplicas 5 is above maxReplicas 2"),
    ],
    ids=["canary share over 100", "min over max replicas"],
)
def test_validation_rejects_what_kserve_would_refuse_or_ignore(mutate, message):
    manifest = _render(CANARY)
    mutate(manifest["spec"]["predictor"])
    with pytest.raises(ValueError, match=message):
        validate(manifest)


class _StandInApiServer(BaseHTTPRequestHandler):
    """Just enough of the Kubernetes API for namespaced custom objects; records every call."""

    objects: dict = {}
    calls: list = []

    def _send(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["content-length"])))

    def do_GET(self):
        self.calls.append(("GET", self.path, None, None))
        if self.path in self.objects:
            return self._send(200, self.objects[self.path])
        return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

    def do_POST(self):
        body = self._body()
        self.calls.append(("POST", self.path, self.headers["content-type"], body))
        self.objects[f"{self.path}/{body['metadata']['name']}"] = body
        return self._send(201, body)

    def do_PATCH(self):
        body = self._body()
        self.calls.append(("PATCH", self.path, self.headers["content-type"], body))
        merged = json.loads(json.dumps(self.objects[self.path]))
        _merge(merged, body)
        self.objects[self.path] = merged
        return self._send(200, merged)

    def log_message(self, *args):
        pass


def _merge(target: dict, patch: dict) -> None:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


@pytest.fixture
def api_server():
    _StandInApiServer.objects, _StandInApiServer.calls = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandInApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    configuration = k8s.Configuration(host=f"http://127.0.0.1:{server.server_port}")
    try:
        yield k8s.ApiClient(configuration), _StandInApiServer
    finally:
        server.shutdown()
        server.server_close()


def test_apply_creates_then_merge_patches_the_inference_service(api_server):
    api_client, stand_in = api_server
    path = "/apis/serving.kserve.io/v1beta1/namespaces/mlops/inferenceservices"

    apply(_render(CANARY), api_client)
    assert [c[:2] for c in stand_in.calls] == [("GET", f"{path}/churn"), ("POST", path)]
    assert stand_in.calls[1][2] == "application/json"
    stored = stand_in.objects[f"{path}/churn"]
    validate(stored)
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 20

    # Promotion: the challenger alone at 100 %; the merge patch must clear the canary share.
    apply(_render(STABLE), api_client)
    method, url, content_type, body = stand_in.calls[-1]
    assert (method, url, content_type) == ("PATCH", f"{path}/churn", "application/merge-patch+json")
    assert body["spec"]["predictor"]["canaryTrafficPercent"] is None
    stored = stand_in.objects[f"{path}/churn"]
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]
    assert stored["spec"]["predictor"]["containers"][0]["args"][4] == "4"
    validate(stored)
