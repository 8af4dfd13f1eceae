"""Bearer JWTs (PyJWT), verified against the configured issuer: HS256 with a shared secret on the
embedded profile, the issuer's JWKS (RS256/ES256) in production. A token must be signed with an
accepted algorithm (never `none`, and never one other than its key's: no switching from RS256 to
HS256 with the public key as the secret), unexpired, for this audience and from this issuer, and
name its subject, tenant and role."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import jwt

from mlops_assets.api.errors import ApiError
from mlops_assets.settings import ApiSettings

REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud"]
MAX_TOKEN_BYTES = 8192
MIN_SECRET_BYTES = 32
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mlops"'}


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant: str
    role: str


class AuthConfigError(RuntimeError):
    """The API cannot verify tokens as configured (no secret, or no JWKS URL)."""


def unauthorized(message: str, reason: str = "invalid_token") -> ApiError:
    header = f'Bearer realm="mlops", error="{reason}"'
    return ApiError(401, reason, message, {"WWW-Authenticate": header})


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise ApiError(401, "missing_token", "a bearer token is required", CHALLENGE)
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("the Authorization header must be `Bearer <token>`")
    if len(token) > MAX_TOKEN_BYTES:
        raise unauthorized("the token is too long")
    return token


class TokenVerifier:
    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        self._algorithms = [a for a in settings.algorithms if a.lower() != "none"]
        self._jwks = None
        if settings.jwks_url:
            self._jwks = jwt.PyJWKClient(
                settings.jwks_url, cache_keys=True, lifespan=300, timeout=5
            )
        elif settings.jwt_secret is None:
            raise AuthConfigError(
                "no way to verify tokens: set MLOPS_API_JWT_SECRET (HS256, the embedded profile) "
                "or MLOPS_API_JWKS_URL (production)"
            )
        elif len(settings.jwt_secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise AuthConfigError(f"MLOPS_API_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        self.blocking = self._jwks is not None  # verifying may fetch the JWKS document

    def _key(self, token: str, algorithm: str):
        if self._jwks is None:
            return self._settings.jwt_secret.get_secret_value()
        try:
            signing = self._jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise ApiError(503, "issuer_unreachable", "cannot fetch the issuer's keys") from None
        except (jwt.PyJWKClientError, jwt.DecodeError) as err:
            raise unauthorized(f"no key of the issuer verifies this token: {err}") from None
        if signing.algorithm_name != algorithm:
            raise unauthorized(f"the token's algorithm {algorithm} is not its key's")
        return signing.key

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise unauthorized("the token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise unauthorized(f"algorithm {algorithm!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                self._key(token, algorithm),
                algorithms=[algorithm],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_seconds,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("the token has expired", "expired_token") from None
        except jwt.InvalidTokenError as err:
            raise unauthorized(f"invalid token: {err}") from None
        return _principal(claims)


def _principal(claims: dict) -> Principal:
    values = {name: claims.get(name) for name in ("sub", "tenant", "role")}
    missing = [name for name, value in values.items() if not isinstance(value, str) or not value]
    if missing:
        raise unauthorized(f"the token lacks the claim(s) {missing}")
    return Principal(values["sub"], values["tenant"], values["role"])


def mint_token(
    settings: ApiSettings,
    subject: str,
    tenant: str,
    role: str,
    ttl: dt.timedelta = dt.timedelta(hours=8),
) -> str:
    """An HS256 token for the embedded profile (development and tests); production tokens come
    from the issuer."""
    if settings.jwt_secret is None:
        raise AuthConfigError("set MLOPS_API_JWT_SECRET to mint development tokens")
    now = dt.datetime.now(dt.UTC)
    claims = {
        "sub": subject,
        "tenant": tenant,
        "role": role,
        "iss": settings.issuer,
        "aud": settings.audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
