"""What every route shares (the engines, the policy, the verifier, the limiter, the audit log, a
short-lived read cache) and the one dependency that admits a caller: a verified token, within its
tenant's rate limit, whose role holds the route's permission."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mlops_assets.api.access import AccessPolicy
from mlops_assets.api.auth import Principal, TokenVerifier, bearer_token
from mlops_assets.api.errors import ApiError
from mlops_assets.api.ratelimit import RateLimiter, retry_after
from mlops_assets.lakehouse.audit import AuditLog
from mlops_assets.settings import ApiSettings

T = TypeVar("T")
# Declares the scheme in the OpenAPI schema; the header itself is checked by `bearer_token`.
BEARER = HTTPBearer(auto_error=False, description="A JWT from the configured issuer.")


class ReadCache:
    """Answers of reads kept for `ttl` seconds (MLflow and the decision log cost milliseconds a
    call). An answer older than that is still served while one background thread recomputes it,
    so no caller waits on a refresh; everything is dropped whenever this process changes
    something, so a caller reads its own writes."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._values: dict[tuple, tuple[float, Any]] = {}
        self._refreshing: set[tuple] = set()
        self._generation = 0
        self._lock = threading.Lock()

    def get(self, key: tuple, compute: Callable[[], T]) -> T:
        if self._ttl <= 0:
            return compute()
        hit = self._values.get(key)
        if hit is None:
            return self._store(key, compute, self._generation)
        if time.monotonic() - hit[0] >= self._ttl:
            with self._lock:
                start = key not in self._refreshing
                self._refreshing.add(key)
            if start:
                args = (key, compute, self._generation)
                threading.Thread(target=self._refresh, args=args, daemon=True).start()
        return hit[1]

    def _store(self, key: tuple, compute: Callable[[], T], generation: int) -> T:
        started = time.monotonic()
        value = compute()
        with self._lock:
            if generation == self._generation:  # not computed before a change it missed
                self._values[key] = (started, value)
        return value

    def _refresh(self, key: tuple, compute: Callable[[], Any], generation: int) -> None:
        try:
            self._store(key, compute, generation)
        except Exception:  # dropped: the next caller computes it and sees the error itself
            with self._lock:
                self._values.pop(key, None)
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._values.clear()


@dataclass
class ApiContext:
    settings: ApiSettings
    resources: Any  # mlops_assets.resources.open_resources(): registry, deployer, lakehouse, ...
    policy: AccessPolicy
    verifier: TokenVerifier
    limiter: RateLimiter
    audit: AuditLog
    cache: ReadCache
    _registry: Any = field(default=None, repr=False)

    @property
    def registry(self):
        if self._registry is None:
            self._registry = self.resources.model_registry.registry()
        return self._registry

    def catalog(self):
        return self.resources.lakehouse.catalog()


async def context(request: Request) -> ApiContext:
    return request.app.state.context


Context = Annotated[ApiContext, Depends(context)]


def caller(permission: str) -> Callable[..., Principal]:
    async def admit(
        request: Request,
        ctx: Context,
        _: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    ) -> Principal:
        token = bearer_token(request.headers.get("authorization"))
        if ctx.verifier.blocking:  # may fetch the issuer's JWKS
            principal = await anyio.to_thread.run_sync(ctx.verifier.verify, token)
        else:  # an HMAC check: no thread hop
            principal = ctx.verifier.verify(token)
        request.state.principal = principal  # the audit log's who
        if getattr(ctx.limiter, "blocking", True):  # a network round trip (Redis)
            wait = await anyio.to_thread.run_sync(ctx.limiter.hit, principal.tenant)
        else:
            wait = ctx.limiter.hit(principal.tenant)
        if wait is not None:
            raise ApiError(
                429,
                "rate_limited",
                f"tenant {principal.tenant} is over its rate limit; retry later",
                {"Retry-After": retry_after(wait)},
            )
        ctx.policy.authorize(principal, permission)
        return principal

    return admit


def allowed(permission: str) -> Any:
    """`caller: allowed("models:write")` in a route's signature."""
    return Annotated[Principal, Depends(caller(permission))]
