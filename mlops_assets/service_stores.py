"""The services profile's own state on the machine's servers: its PostgreSQL databases
(`<prefix>_dagster`, `_mlflow`, `_decisions`, `_feast`), its Redis database, and the SeaweedFS
node's folder. Created by `mlops services up` and the demo's set-up; emptied by the demo's reset
(the embedded profile's reset deletes folders in the data folder, this is its counterpart).
Nothing outside those names is touched.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from mlops_assets.settings import SERVICES_DATABASES

if TYPE_CHECKING:
    from mlops_assets.settings import Settings


def _admin_connection(settings: Settings):
    """Autocommit connection to the server's maintenance database (CREATE/DROP DATABASE)."""
    import psycopg2

    connection = psycopg2.connect(settings.postgres_url, connect_timeout=5)
    connection.autocommit = True
    return connection


def _names(settings: Settings) -> list[str]:
    return [urlsplit(settings.services_database(n)).path.lstrip("/") for n in SERVICES_DATABASES]


def ensure_databases(settings: Settings) -> list[str]:
    """Create the profile's databases that do not exist yet; returns the ones created."""
    created = []
    with contextlib.closing(_admin_connection(settings)) as conn, conn.cursor() as cur:
        for name in _names(settings):
            cur.execute("select 1 from pg_database where datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
                created.append(name)
    return created


def reset_databases(settings: Settings) -> None:
    """Drop and re-create the profile's databases (open connections are ended first)."""
    with contextlib.closing(_admin_connection(settings)) as conn, conn.cursor() as cur:
        for name in _names(settings):
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    ensure_databases(settings)


def reset_redis(settings: Settings) -> None:
    """Empty the profile's own Redis database (MLOPS_SERVICES_REDIS_DB), nothing else."""
    import redis

    client = redis.Redis.from_url(settings.services_redis_url, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


def reset_object_store(settings: Settings) -> None:
    """A fresh SeaweedFS node: stopped, its folder deleted, started again (empty buckets)."""
    from mlops_assets.services import start_seaweed, stop_seaweed

    node = settings.seaweed()
    stop_seaweed(node)
    shutil.rmtree(node.folder, ignore_errors=True)
    start_seaweed(node)


def reset_all(settings: Settings) -> None:
    """Everything the services profile keeps outside the data folder, emptied."""
    reset_object_store(settings)
    reset_databases(settings)
    reset_redis(settings)


def dagster_yaml(settings: Settings, template: Path) -> str:
    """The services instance's dagster.yaml: the template with the PostgreSQL URL written in
    (Dagster reads the file in every process: daemon, code server, runs, `dagster dev`)."""
    url = settings.services_database("dagster")
    parts = urlsplit(url)
    if parts.password:  # not in a file: Dagster takes it from the environment instead
        raise ValueError("MLOPS_POSTGRES_URL with a password: use a .pgpass file for Dagster")
    return template.read_text().replace("${MLOPS_DAGSTER_PG_URL}", urlunsplit(parts))
