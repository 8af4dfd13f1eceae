"""What is deployed: a `DeploymentSpec` (the champion version, an optional challenger and its share
of customers), and the one place the current deployment is stored: the `deployments` table of the
registry's decisions database, one row per model with the active spec and, while a deployment is
in progress, the pending one.

A new spec is written as pending; the deployer puts it in front of traffic (the local model server
loads the pending spec through KServe's repository endpoint; an InferenceService is applied); only
once it is ready does it become active. A spec that fails its readiness check is dropped and the
active one keeps serving.
"""

from __future__ import annotations

import datetime as dt
import zlib

import sqlalchemy as sa
from pydantic import BaseModel, Field

from mlops_assets.training.decisions import METADATA, decisions_engine
from mlops_assets.training.registry import Registry


class DeploymentError(RuntimeError):
    """A deployment did not become ready; what served before still serves."""


class DeploymentSpec(BaseModel):
    model: str
    champion_version: str
    challenger_version: str | None = None
    canary_percent: int = Field(0, ge=0, le=100)
    actor: str = "unknown"
    reason: str = ""
    updated_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def split(self) -> dict[str, int]:
        """Traffic share per version."""
        if not self.challenger_version or self.canary_percent == 0:
            return {self.champion_version: 100}
        return {
            self.champion_version: 100 - self.canary_percent,
            self.challenger_version: self.canary_percent,
        }


def challenger_share(customer_id: int, salt: str) -> int:
    """A stable number in [0, 100) per customer: the canary split is sticky per customer (salted with
    the challenger version, so each canary samples different customers)."""
    return zlib.crc32(f"{salt}:{customer_id}".encode()) % 100


DEPLOYMENTS = sa.Table(
    "deployments",
    METADATA,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("active", sa.Text, nullable=True),  # the spec serving now (JSON)
    sa.Column("pending", sa.Text, nullable=True),  # the spec being rolled out (JSON)
)


def _row(registry: Registry, model: str) -> dict | None:
    query = sa.select(DEPLOYMENTS).where(DEPLOYMENTS.c.model == model)
    with decisions_engine(registry).connect() as conn:
        row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def _spec(text: str | None) -> DeploymentSpec | None:
    return DeploymentSpec.model_validate_json(text) if text else None


def active_spec(registry: Registry, model: str) -> DeploymentSpec | None:
    """The deployment serving now (None before the first one)."""
    row = _row(registry, model)
    return _spec(row["active"]) if row else None


def spec_to_serve(registry: Registry, model: str) -> DeploymentSpec | None:
    """What a server (re)loading now should serve: the pending spec while a deployment is in
    progress, else the active one."""
    row = _row(registry, model)
    return (_spec(row["pending"]) or _spec(row["active"])) if row else None


def set_pending(registry: Registry, spec: DeploymentSpec) -> None:
    with decisions_engine(registry).begin() as conn:
        updated = conn.execute(
            DEPLOYMENTS.update()
            .where(DEPLOYMENTS.c.model == spec.model)
            .values(pending=spec.model_dump_json())
        ).rowcount
        if not updated:
            conn.execute(
                DEPLOYMENTS.insert().values(model=spec.model, pending=spec.model_dump_json())
            )


def resolve_pending(registry: Registry, model: str, ready: bool) -> None:
    """The pending spec becomes active (it is ready) or is dropped (it is not)."""
    values = {"pending": None}
    with decisions_engine(registry).begin() as conn:
        if ready:
            values["active"] = DEPLOYMENTS.c.pending
        conn.execute(DEPLOYMENTS.update().where(DEPLOYMENTS.c.model == model).values(**values))
