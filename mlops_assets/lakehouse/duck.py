"""DuckDB's extensions and S3 access, one recipe for every DuckDB connection of the project (dbt's
is configured in profiles.yml the same way).

- The extensions come from their PyPI packages (duckdb-extension-httpfs/-iceberg/-avro): DuckDB
  cannot download them here. `install_extensions` copies them into DuckDB's extension folder
  once, after which any connection (dbt-duckdb's, ibis's inside Feast) autoloads them.
- S3 on a non-AWS endpoint (SeaweedFS on the services profile) needs a secret with the endpoint
  and path-style URLs; DuckDB reads neither from the AWS variables the other clients use, so
  `configure_s3` writes one from them. Without AWS_ENDPOINT_URL nothing is configured (AWS itself,
  or no S3 at all).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

EXTENSIONS = ("avro", "iceberg", "httpfs")


@functools.cache
def extension_path(name: str) -> str:
    """The extension's file inside its PyPI package (searched for once a process)."""
    import importlib

    package = importlib.import_module(f"duckdb_extension_{name}")
    return str(next(Path(package.__file__).parent.rglob(f"{name}.duckdb_extension")))


def install_extensions() -> list[str]:
    """Install the packaged extensions into DuckDB's extension folder (a no-op when there)."""
    import duckdb

    with duckdb.connect() as con:
        installed = {
            row[0]
            for row in con.execute(
                "select extension_name from duckdb_extensions() where installed"
            ).fetchall()
        }
        for name in EXTENSIONS:
            if name not in installed:
                con.execute(f"INSTALL '{extension_path(name)}'")
    return list(EXTENSIONS)


def s3_secret_sql(env: Mapping[str, str] | None = None) -> str | None:
    """CREATE SECRET for the S3 endpoint in `env` (default: this process's), or None."""
    env = os.environ if env is None else env
    endpoint = env.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return None
    host = endpoint.split("://", 1)[-1].rstrip("/")
    values = {
        "KEY_ID": env.get("AWS_ACCESS_KEY_ID", ""),
        "SECRET": env.get("AWS_SECRET_ACCESS_KEY", ""),
        "REGION": env.get("AWS_REGION", "us-east-1"),
        "ENDPOINT": host,
        "URL_STYLE": "path",
    }
    quoted = ", ".join(f"{key} '{_literal(value)}'" for key, value in values.items())
    use_ssl = "true" if endpoint.startswith("https://") else "false"
    return f"CREATE OR REPLACE SECRET mlops_s3 (TYPE s3, {quoted}, USE_SSL {use_ssl})"


def configure_s3(con: Any, env: Mapping[str, str] | None = None) -> bool:
    """Load httpfs and the endpoint's secret into `con`; False when there is no endpoint."""
    sql = s3_secret_sql(env)
    if sql is None:
        return False
    con.execute(f"LOAD '{extension_path('httpfs')}'")
    con.execute(sql)
    return True


def configure_ibis_default(env: Mapping[str, str] | None = None) -> None:
    """The same for ibis's default DuckDB connection: Feast's duckdb offline store reads its
    FileSources through `ibis.read_parquet`, which has no other way to get the endpoint."""
    if s3_secret_sql(env) is None:
        return
    import ibis

    configure_s3(ibis.get_backend().con, env)


def _literal(value: str) -> str:
    return value.replace("'", "''")
