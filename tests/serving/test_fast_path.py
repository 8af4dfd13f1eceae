"""The server's fast path for the predict routes (mlops_assets/serving/fast_path.py) answers exactly
as KServe's full FastAPI stack does: the same request sent to the fast path and, with a query
string, to the full stack gets the same status, headers (but the date), body, and the same counts
in /metrics. The routes it does not take still answer through KServe's stack."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.serving.serving_world import BASE, REQUEST_TS, V1, V2, customers, error_counts

pytestmark = pytest.mark.slow

FULL_STACK = "?via=full"  # the fast path takes no request with a query string


def _send(port: int, path: str, body: bytes, headers: dict[str, str]):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        raw = response.read()
        kept = [(k.lower(), v) for k, v in response.getheaders() if k.lower() != "date"]
        return response.status, kept, raw
    finally:
        conn.close()


def _metrics(port: int) -> tuple[dict[str, float], float, float]:
    """Rejections by reason, rows scored, and KServe's predict histogram count."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    scored = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mlops_predictions_total{")
    )
    predicts = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(f'request_predict_seconds_count{{model_name="{BASE.name}"}}')
    )
    return error_counts(text), scored, predicts


def _cases(known: list[int]) -> list[tuple[str, object, dict[str, str]]]:
    a, b = known[:2]
    ids_tensor = {"name": "customer_id", "shape": [2], "datatype": "INT64", "data": [a, b]}
    stamps = {"name": "request_ts", "shape": [2], "datatype": "BYTES", "data": [REQUEST_TS] * 2}
    json_ct = {"content-type": "application/json"}
    return [
        (V1, {"instances": [{"customer_id": a, "request_ts": REQUEST_TS}]}, json_ct),
        (V1, {"instances": [{"customer_id": a}, {"customer_id": b}]}, {}),
        (
            V1,
            {"instances": [{"customer_id": a}]},
            {"content-type": "application/json; charset=utf-8"},
        ),
        (V1, {"instances": [{"customer_id": 10**12}]}, json_ct),  # unknown customer
        (V1, {"instances": [{"customer_id": a, "request_ts": "2020-01-01"}]}, json_ct),
        (V1, {"instances": [{"customer_id": "7"}]}, json_ct),
        (V1, {"instances": []}, json_ct),
        (V1, {"inputs": []}, json_ct),
        (V1, b'{"instances": [{"customer_id": NaN}]}', json_ct),
        (V1, {"instances": [{"customer_id": a}]}, {"content-type": "text/plain"}),
        (V2, {"id": "v2-fast", "inputs": [ids_tensor, stamps]}, json_ct),
        (V2, {"inputs": [ids_tensor], "outputs": [{"name": "score"}, {"name": "arm"}]}, json_ct),
        (V2, {"inputs": [{**ids_tensor, "data": [a, 2**70]}]}, json_ct),
        (V2, {"inputs": [{**ids_tensor, "data": [a, 1.5]}]}, json_ct),
        (V2, {"inputs": [{**ids_tensor, "datatype": "FP32"}]}, json_ct),
        (V2, {"inputs": [{**ids_tensor, "shape": [3]}]}, json_ct),
        (V2, {"inputs": [ids_tensor], "outputs": [{"name": "probability"}]}, json_ct),
        (V2, {"inputs": [{**ids_tensor, "data": [[a], [b]]}]}, json_ct),
        (V2, {"inputs": [{**ids_tensor, "data": [a, 10**12]}]}, json_ct),
        (V2, {"inputs": [ids_tensor, {**stamps, "data": ["May", "May"]}]}, json_ct),
    ]


def test_the_fast_path_answers_as_the_full_stack(shop):
    port = shop["port"]
    before = _metrics(port)
    for path, body, headers in _cases(customers(shop, 2)):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {**headers, "x-request-id": "fast-path-test"}
        fast = _send(port, path, raw, sent)
        full = _send(port, path + FULL_STACK, raw, sent)
        assert fast == full, (path, body, fast, full)
        assert fast[0] < 500, fast
    errors, scored, predicts = _metrics(port)
    # Every case went twice: each count moved by an even number (the fast path counts as KServe).
    moved = {r: errors.get(r, 0) - before[0].get(r, 0) for r in errors}
    assert moved and all(n % 2 == 0 for n in moved.values()), moved
    assert scored - before[1] >= 2 * 6 and (scored - before[1]) % 2 == 0
    assert predicts - before[2] > 0 and (predicts - before[2]) % 2 == 0


def test_a_version_in_the_path_and_metadata_still_go_through_kserve(shop):
    """Routes the fast path does not take answer as before (versioned V2 infer, metadata)."""
    port = shop["port"]
    body = json.dumps({"inputs": [{"name": "customer_id", "shape": [1], "datatype": "INT64",
                                   "data": customers(shop, 1)}]}).encode()  # fmt: skip
    json_ct = {"content-type": "application/json"}
    status, _, raw = _send(port, f"/v2/models/{BASE.name}/versions/1/infer", body, json_ct)
    assert status == 400 and json.loads(raw)["reason"] == "invalid_input", raw
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", f"/v2/models/{BASE.name}")
    metadata = json.loads(conn.getresponse().read())
    conn.close()
    assert metadata["name"] == BASE.name
    assert [i["name"] for i in metadata["inputs"]] == ["customer_id", "request_ts"]
