"""/v1/tables: the Iceberg tables analysts query for the caller's models, as Trino names and
types them (from the table registry, `lakehouse/tables.py`); /v1/audit: the tenant's rows of the
audit log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from mlops_assets.api.context import Context, allowed

router = APIRouter(tags=["tables"])
Reader = allowed("tables:read")
AuditReader = allowed("audit:read")
TRINO_TYPES = {
    "string": "varchar",
    "int64": "bigint",
    "int32": "integer",
    "float64": "double",
    "bool": "boolean",
    "date": "date",
    "timestamptz": "timestamp(6) with time zone",
}


def describe(table: Any, model: str | None) -> dict[str, Any]:
    return {
        "name": f"iceberg.{table.name(model)}",
        "model": model,
        "description": table.description,
        "partitioned_by": table.partition_field,
        "columns": [
            {"name": name, "type": TRINO_TYPES[kind], "nullable": nullable}
            for name, kind, nullable in table.columns()
        ],
    }


@router.get("/v1/tables")
def tables(principal: Reader, ctx: Context) -> list[dict[str, Any]]:
    """Each per-model table (predictions, inference log, monitoring) of the caller's models."""
    from mlops_assets.lakehouse.tables import TABLES

    per_model = [t for t in TABLES if "{model}" in t.template]
    return [describe(t, c.name) for c in ctx.policy.models(principal) for t in per_model]


@router.get("/v1/audit")
def audit(
    principal: AuditReader,
    ctx: Context,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The newest entries of the audit log in the caller's tenant, newest first."""
    rows = ctx.audit.read(tenant=principal.tenant, limit=limit)
    for row in rows:
        row["occurred_at"] = row["occurred_at"].isoformat()
    return rows
