"""The production warehouse's Trino client, as configured: a password goes only over HTTPS (Basic
auth), the server's certificate is verified (against a private CA bundle when one is set), and a
password with plain HTTP is a clear error before anything is sent. No Trino runs here: a stand-in
speaks just enough of its HTTP protocol (one finished statement) and records what arrives."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlops_assets.lakehouse.warehouse import TrinoConfigError
from mlops_assets.resources import TrinoWarehouse


class _StandInTrino(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"])).decode()
        self.received.append({"path": self.path, "headers": dict(self.headers), "sql": body})
        answer = {
            "id": "20261202_000000_00000_stand",
            "infoUri": "https://127.0.0.1/ui/query.html",
            "columns": [
                {
                    "name": "n",
                    "type": "bigint",
                    "typeSignature": {"rawType": "bigint", "arguments": []},
                }
            ],
            "data": [[1]],
            "stats": {"state": "FINISHED"},
        }
        raw = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def trino_https(tmp_path_factory) -> Iterator[tuple[int, Path]]:
    """(port, CA bundle) of a stand-in Trino on 127.0.0.1 with a self-signed certificate."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandInTrino)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert
    server.shutdown()
    server.server_close()


def _warehouse(port: int, **changes) -> TrinoWarehouse:
    values = {
        "host": "127.0.0.1",
        "port": port,
        "user": "analyst",
        "password": "s3cret",
        "http_scheme": "https",
        **changes,
    }
    return TrinoWarehouse(**values)


def test_a_password_goes_over_https_as_basic_auth(trino_https):
    port, ca = trino_https
    _StandInTrino.received.clear()
    frame = _warehouse(port, ca_bundle=str(ca)).query("select 1 as n")
    assert frame.to_dict("records") == [{"n": 1}]
    (request,) = _StandInTrino.received
    assert request["path"] == "/v1/statement" and request["sql"] == "select 1 as n"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["authorization"] == "Basic " + base64.b64encode(b"analyst:s3cret").decode()
    assert headers["x-trino-user"] == "analyst" and headers["x-trino-catalog"] == "iceberg"


def test_the_server_certificate_is_verified(trino_https):
    port, _ = trino_https
    _StandInTrino.received.clear()
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        _warehouse(port).query("select 1 as n")  # the system CAs do not know the stand-in's
    assert not _StandInTrino.received


def test_a_password_over_plain_http_is_refused_before_sending(trino_https):
    port, ca = trino_https
    _StandInTrino.received.clear()
    with pytest.raises(TrinoConfigError, match="only over https"):
        _warehouse(port, http_scheme="http", ca_bundle=str(ca)).query("select 1 as n")
    assert not _StandInTrino.received
