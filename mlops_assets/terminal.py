"""How the `mlops` commands print: a cyan `[step]` prefix per progress line, errors in red on
stderr with exit code 1 (never a traceback for a user mistake)."""

from __future__ import annotations

import typer


def echo(step: str, message: str) -> None:
    typer.secho(f"[{step}] ", fg=typer.colors.CYAN, nl=False)
    typer.echo(message)


def fail(message: str) -> int:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return 1
