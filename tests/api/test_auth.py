"""Tokens as an attacker would forge them: none at all, expired, for another audience or issuer,
signed with another secret, `alg: none`, an RS256 token re-signed as HS256 with the issuer's
public key as the secret, a key the issuer never published. And JWKS served for real from a local
HTTP server."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import threading

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.api.conftest import auth, claims, token

MODELS = "/v1/models"


def _unauthorized(response, reason: str = "invalid_token") -> dict:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["reason"] == reason and body["error"].lower()
    return body


def test_a_valid_token_is_admitted(client):
    assert client.get(MODELS, headers=auth()).status_code == 200


def test_no_token(client):
    _unauthorized(client.get(MODELS), "missing_token")


@pytest.mark.parametrize(
    "header", ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer    ", "Token abc", "Bearer not.a.jwt"]
)
def test_malformed_authorization_headers(client, header):
    _unauthorized(client.get(MODELS, headers={"Authorization": header}))


def test_expired_token(client):
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    expired = auth(iat=past - dt.timedelta(hours=1), exp=past)
    _unauthorized(client.get(MODELS, headers=expired), "expired_token")


def test_wrong_audience_and_issuer(client):
    assert (
        "audience"
        in _unauthorized(client.get(MODELS, headers=auth(aud="another-api")))["error"].lower()
    )
    assert (
        "issuer"
        in _unauthorized(client.get(MODELS, headers=auth(iss="https://evil")))["error"].lower()
    )


def test_wrong_signature(client):
    forged = token(key="another-secret-" + "x" * 40)
    _unauthorized(client.get(MODELS, headers={"Authorization": f"Bearer {forged}"}))


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, default=str).encode()).rstrip(b"=").decode()


def test_alg_none_is_refused(client):
    body = {k: int(v.timestamp()) if isinstance(v, dt.datetime) else v for k, v in claims().items()}
    for alg in ("none", "None", "NONE"):
        unsigned = f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(body)}."
        answer = _unauthorized(client.get(MODELS, headers={"Authorization": f"Bearer {unsigned}"}))
        assert "not accepted" in answer["error"].lower()


def test_missing_claims_are_refused(client):
    for claim in ("sub", "tenant", "role", "exp", "aud", "iss"):
        _unauthorized(client.get(MODELS, headers=auth(**{claim: None})))


def test_an_unknown_role_is_forbidden(client):
    answer = client.get(MODELS, headers=auth(role="root"))
    assert answer.status_code == 403 and answer.json()["reason"] == "unknown_role"


# -- JWKS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer_keys():
    """An RSA key pair of the issuer, and a JWKS document with its public key served over HTTP
    on a free loopback port."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    document = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield private, f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def jwks_client(make_client, issuer_keys):
    _, url = issuer_keys
    return make_client(algorithms=("RS256", "ES256"), jwt_secret=None, jwks_url=url)


def test_jwks_token_is_admitted(jwks_client, issuer_keys):
    private, _ = issuer_keys
    signed = token(key=private, algorithm="RS256", headers={"kid": "k1"})
    answer = jwks_client.get(MODELS, headers={"Authorization": f"Bearer {signed}"})
    assert answer.status_code == 200, answer.text


def test_algorithm_switching_with_the_public_key_is_refused(jwks_client, issuer_keys):
    """The classic confusion attack: HS256 with the issuer's public key (PEM) as the secret."""
    private, _ = issuer_keys
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = claims()
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": "k1"})
    payload = _b64(
        {k: int(v.timestamp()) if isinstance(v, dt.datetime) else v for k, v in body.items()}
    )
    import hashlib
    import hmac

    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    _unauthorized(jwks_client.get(MODELS, headers={"Authorization": f"Bearer {forged}"}))


def test_a_key_the_issuer_never_published_is_refused(jwks_client):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for kid in ("k1", "k2"):
        signed = token(key=stranger, algorithm="RS256", headers={"kid": kid})
        _unauthorized(jwks_client.get(MODELS, headers={"Authorization": f"Bearer {signed}"}))


def test_jwks_does_not_accept_the_hs256_secret(jwks_client):
    _unauthorized(jwks_client.get(MODELS, headers=auth()))


# -- the profiles ----------------------------------------------------------------------------------


def test_the_production_profile_verifies_with_jwks_and_shares_the_limit_in_redis():
    """MLOPS_ENV=prod: RS256/ES256 against the issuer's JWKS, the HS256 secret ignored even when
    set (no way to mint tokens from a leaked development secret), the rate limit in Redis."""
    from mlops_assets.api.app import rate_limiter
    from mlops_assets.api.auth import AuthConfigError, TokenVerifier
    from mlops_assets.api.ratelimit import MemoryRateLimiter, RedisRateLimiter
    from mlops_assets.settings import Environment, Settings

    secret = "s" * 40
    url = "https://issuer.example.com/.well-known/jwks.json"
    prod = Settings(env=Environment.PROD, api_jwt_secret=secret, api_jwks_url=url).api()
    assert prod.algorithms == ("RS256", "ES256") and "HS256" not in prod.algorithms
    assert prod.jwt_secret is None and prod.jwks_url == url
    assert isinstance(rate_limiter(prod), RedisRateLimiter)
    assert TokenVerifier(prod).blocking  # verifying may fetch the JWKS document

    local = Settings(env=Environment.LOCAL, api_jwt_secret=secret, api_jwks_url=url).api()
    assert local.algorithms == ("HS256",) and local.jwks_url is None
    assert isinstance(rate_limiter(local), MemoryRateLimiter)

    with pytest.raises(AuthConfigError, match="MLOPS_API_JWKS_URL"):
        TokenVerifier(Settings(env=Environment.PROD, api_jwks_url=None).api())
    with pytest.raises(AuthConfigError, match="at least 32 bytes"):
        TokenVerifier(Settings(env=Environment.LOCAL, api_jwt_secret="short").api())
