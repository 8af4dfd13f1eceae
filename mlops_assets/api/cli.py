"""`mlops api`: run the control API (uvicorn on 127.0.0.1), and `mlops api token`: mint a
development token (HS256, the embedded profile's secret)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import typer

from mlops_assets.settings import get_settings

api_app = typer.Typer(
    help="The control API for teams (FastAPI; OpenAPI at /v1/openapi.json).",
    invoke_without_command=True,
)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


@api_app.callback()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(None, help="Default: MLOPS_API_PORT (8090)."),
) -> None:
    """Serve the control API in the foreground."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from mlops_assets.api.app import create_app
    from mlops_assets.api.auth import AuthConfigError
    from mlops_assets.resources import open_resources

    settings = get_settings()
    with open_resources(settings) as resources:
        try:
            app = create_app(settings.api(), resources)
        except (AuthConfigError, OSError, ValueError) as err:
            raise _fail(str(err)) from None
        typer.echo(f"[api] http://{host}:{port or settings.api_port}/v1/docs")
        uvicorn.run(app, host=host, port=port or settings.api_port, log_level="warning")


@api_app.command("token")
def token(
    subject: str = typer.Option(..., "--sub", help="Who the token is for."),
    tenant: str = typer.Option(..., help="The tenant (deploy/api/access.yaml)."),
    role: str = typer.Option(..., help="viewer | data-scientist | ml-engineer | admin"),
    hours: float = typer.Option(8, help="Lifetime."),
) -> None:
    """Print an HS256 development token signed with MLOPS_API_JWT_SECRET."""
    from mlops_assets.api.auth import AuthConfigError, mint_token

    try:
        minted = mint_token(get_settings().api(), subject, tenant, role, dt.timedelta(hours=hours))
    except AuthConfigError as err:
        raise _fail(str(err)) from None
    typer.echo(minted)


def audit_cli(resources: Any, action: str, model: str, arguments: dict, operation: Callable) -> Any:
    """A CLI rollout command, recorded in the same audit log as the API's calls (actor
    `cli:<OS user>`, the model's tenant from deploy/api/access.yaml)."""
    from mlops_assets.api.access import load_policy
    from mlops_assets.lakehouse.audit import AuditLog, audited

    try:
        tenant = load_policy(get_settings().api_access_file).tenant_of(model)
    except (OSError, ValueError):
        tenant = ""
    audit = AuditLog(resources.lakehouse.catalog())
    return audited(audit, action, model, arguments, operation, tenant=tenant)
