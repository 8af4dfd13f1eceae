"""`create_app(settings, resources)`: the control API over one set of engines (the environment's,
from `open_resources`, or a test's). Routers per domain; every mutating call passes the audit
door; every error is JSON."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from mlops_assets.api import deployments, errors, models, monitoring, runs, tables
from mlops_assets.api.access import load_policy
from mlops_assets.api.audit import AuditMiddleware
from mlops_assets.api.auth import TokenVerifier
from mlops_assets.api.context import ApiContext, ReadCache
from mlops_assets.api.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from mlops_assets.lakehouse.audit import AuditLog
from mlops_assets.settings import ApiSettings

DESCRIPTION = """The control API of the lakehouse MLOps platform: models, deployments, runs,
monitoring and the analysts' tables of a tenant. Every call needs a bearer JWT naming a subject,
a tenant and a role; every mutating call is recorded in the audit log (`iceberg.audit.actions`).
"""


def rate_limiter(settings: ApiSettings) -> RateLimiter:
    """Redis when configured (several API processes share one limit), else in memory."""
    if settings.redis_url:
        return RedisRateLimiter(
            settings.redis_url, settings.rate_limit, settings.rate_window_seconds
        )
    return MemoryRateLimiter(settings.rate_limit, settings.rate_window_seconds)


def create_app(
    settings: ApiSettings, resources: Any, limiter: RateLimiter | None = None
) -> FastAPI:
    context = ApiContext(
        settings=settings,
        resources=resources,
        policy=load_policy(settings.access_file),
        verifier=TokenVerifier(settings),
        limiter=limiter or rate_limiter(settings),
        audit=AuditLog(resources.lakehouse.catalog()),
        cache=ReadCache(settings.read_cache_seconds),
    )
    app = FastAPI(
        title="MLOps control API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
    )
    app.state.context = context
    errors.install(app)
    for module in (models, deployments, runs, monitoring, tables):
        app.include_router(module.router)
    app.add_middleware(
        AuditMiddleware,
        audit=context.audit,
        max_body_bytes=settings.max_body_bytes,
        on_change=context.cache.clear,
    )

    @app.get("/v1/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness, without authentication."""
        return {"status": "ok"}

    return app
