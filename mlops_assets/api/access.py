"""Roles and tenants, from configuration (deploy/api/access.yaml): the permissions of each role,
and which tenant each model belongs to. A caller works inside the tenant its token names; any
model outside it is answered exactly as a model that does not exist (404), so names never leak.
A role without a permission is refused with 403 whatever the name asked for."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlops_assets.api.auth import Principal
from mlops_assets.api.errors import ApiError, not_found
from mlops_assets.model_config import ModelConfig, model_configs

PERMISSIONS = frozenset(
    {
        "models:read",
        "models:write",
        "features:read",
        "deployments:read",
        "deployments:write",
        "runs:read",
        "runs:retrain",
        "runs:backfill",
        "monitoring:read",
        "tables:read",
        "audit:read",
    }
)
# A name in a path: what model configs and tenants are called (no dots, slashes or spaces).
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"


class AlertRoute(BaseModel):
    model_config = ConfigDict(extra="forbid")

    monitors: list[str]
    channel: str
    models: list[str] | None = None  # None: every model of the tenant


class Tenant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[str] = []
    alert_routes: list[AlertRoute] = []


class AccessPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: dict[str, frozenset[str]]
    tenants: dict[str, Tenant] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> AccessPolicy:
        unknown = {p for perms in self.roles.values() for p in perms} - PERMISSIONS
        if unknown:
            raise ValueError(f"unknown permissions {sorted(unknown)}; known: {sorted(PERMISSIONS)}")
        owners: dict[str, str] = {}
        for name, tenant in self.tenants.items():
            for model in tenant.models:
                if model in owners:
                    raise ValueError(f"model {model} belongs to {owners[model]} and {name}")
                owners[model] = name
        return self

    def authorize(self, principal: Principal, permission: str) -> None:
        if principal.role not in self.roles:
            raise ApiError(403, "unknown_role", f"role {principal.role!r} is not configured")
        if permission not in self.roles[principal.role]:
            raise ApiError(
                403, "forbidden", f"role {principal.role} may not do this (needs {permission})"
            )

    def tenant_of(self, model: str) -> str:
        """The tenant a model belongs to ('' for a model no tenant owns)."""
        return next((n for n, t in self.tenants.items() if model in t.models), "")

    def models(self, principal: Principal) -> list[ModelConfig]:
        """The configured models of the caller's tenant."""
        tenant = self.tenants.get(principal.tenant)
        configs = model_configs()
        return [configs[name] for name in tenant.models if name in configs] if tenant else []

    def model(self, principal: Principal, name: str) -> ModelConfig:
        """The caller's model `name`; another tenant's model is 404, like an unknown one."""
        for config in self.models(principal):
            if config.name == name:
                return config
        raise not_found(f"model {name!r}")

    def alert_routes(self, principal: Principal, model: str) -> list[AlertRoute]:
        tenant = self.tenants.get(principal.tenant, Tenant())
        return [r for r in tenant.alert_routes if r.models is None or model in r.models]


def load_policy(path: Path) -> AccessPolicy:
    return AccessPolicy.model_validate(yaml.safe_load(Path(path).read_text()))
