"""Shared fixtures. Service-backed tests skip with a reason when the service is absent, unless
CI=true, where a missing PostgreSQL or Redis fails the run instead. Worlds, shops and models are
built with the helpers of mlops_assets.testing (the benchmarks use the same ones); tests import
those from there, never from this file."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_assets.settings import Settings
from mlops_assets.testing import scratch_settings, small_world

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", int(os.environ.get("MLOPS_TEST_PG_PORT", "5432"))
REDIS_HOST, REDIS_PORT = "127.0.0.1", int(os.environ.get("MLOPS_TEST_REDIS_PORT", "6379"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (fail when CI=true) unless `name` answers on host:port."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true makes {name} tests mandatory")
    pytest.skip(message)


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    require_service("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    import uuid

    import psycopg2

    admin = psycopg2.connect(
        host=POSTGRES_HOST, port=POSTGRES_PORT, user="postgres", dbname="postgres"
    )
    admin.autocommit = True
    name = f"mlops_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def redis_address() -> tuple[str, int]:
    """(host, port) of the Redis of this machine."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    return REDIS_HOST, REDIS_PORT


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """Point every setting at a private data folder holding a small world."""
    data = tmp_path / "data"
    with scratch_settings(data, small_world(2000)):
        yield data


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    from mlops_assets.settings import get_settings

    return get_settings()


@pytest.fixture
def resources(settings: Settings) -> Iterator[Any]:
    """The embedded resources of the `settings` fixture's data folder, initialized."""
    from mlops_assets.resources import open_resources

    with open_resources(settings) as res:
        yield res


@pytest.fixture(autouse=True)
def _no_dagster_state_storage_from_an_earlier_test() -> Iterator[None]:
    """Each test starts with no "current" Dagster defs-state storage. An entered DagsterInstance
    publishes its storage in a context variable until it exits; one a sensor or schedule context
    opened and never closed outlives its temporary instance, and the next test's
    `load_from_defs_folder` then reads through a dead instance (seen once in a full run:
    "Attempted to resolve undefined DagsterInstance weakref")."""
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield
