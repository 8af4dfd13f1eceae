"""The Feast store for the current environment, built from settings (the same values as
feature_repo/feature_store.yaml for the embedded profile, feature_store.prod.yaml in prod)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.settings import PROJECT_ROOT, Environment, Settings

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.repo_config import RepoConfig
    from feast.repo_contents import RepoContents

FEATURE_REPO = PROJECT_ROOT / "feature_repo"
# The embedded online store's type path (see online_store.py).
STORE_TYPE = "mlops_assets.features.online_store.MonotonicSqliteOnlineStore"
PROJECT = "lakehouse_mlops"


def feast_dir(settings: Settings) -> Path:
    return settings.data_dir / "feast"


def repo_config(settings: Settings) -> RepoConfig:
    from feast.repo_config import RepoConfig, load_repo_config

    if settings.env is Environment.PROD:
        return load_repo_config(FEATURE_REPO, FEATURE_REPO / "feature_store.prod.yaml")
    folder = feast_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry={"registry_type": "file", "path": str(folder / "registry.db")},
        online_store={
            "type": STORE_TYPE,
            "path": str(folder / "online.db"),
        },
        offline_store={"type": "duckdb"},
        entity_key_serialization_version=3,
        repo_path=FEATURE_REPO,
    )


def feature_store(settings: Settings) -> FeatureStore:
    from feast import FeatureStore

    return FeatureStore(config=repo_config(settings))


def repo_contents() -> RepoContents:
    """Import feature_repo/ exactly as `feast apply` does (its modules import each other by name)."""
    from feast.repo_operations import parse_repo

    os.environ.setdefault("FEAST_USAGE", "False")
    if str(FEATURE_REPO) not in sys.path:
        sys.path.insert(0, str(FEATURE_REPO))
    # Re-import on every call: data_sources.py reads the settings (data folder, environment).
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(FEATURE_REPO)):
            del sys.modules[name]
    # Module names are derived from paths relative to the working directory, as with the CLI,
    # which runs inside the repo: from elsewhere each file would be imported twice.
    with contextlib.chdir(FEATURE_REPO):
        return parse_repo(Path("."))


def materialize_window(
    store: FeatureStore, start: dt.datetime, end: dt.datetime, now: dt.datetime | None = None
) -> dict[str, int | None]:
    """Materialize every feature view for event times in [start, end). The embedded SQLite store
    is loaded by the vectorized bulk path; other stores (Redis in prod) through Feast. Returns
    rows written per view (None where Feast does not report it)."""
    now = now or dt.datetime.now(dt.UTC)
    if end > now:
        # Feast would move its incremental watermark past now and later skip data (feast #4222).
        raise ValueError(f"refusing to materialize up to {end.isoformat()}, which is in the future")
    if end <= start:
        raise ValueError(f"empty materialization window {start.isoformat()} .. {end.isoformat()}")
    if store.config.online_store.type == STORE_TYPE:
        from mlops_assets.features.bulk import bulk_materialize

        return bulk_materialize(store, start, end)
    views = [v.name for v in store.list_feature_views()]
    store.materialize(start_date=start, end_date=end, feature_views=views)
    return dict.fromkeys(views)


def source_rows_between(settings: Settings, start: dt.datetime, end: dt.datetime) -> int | None:
    """Rows of the gold feature table with event times in [start, end) (embedded profile only)."""
    if settings.env is Environment.PROD:
        return None
    import duckdb

    path = settings.gold_dir / "customer_features.parquet"
    query = (
        f"select count(*) from read_parquet('{path}') "
        "where event_timestamp >= ?::timestamp and event_timestamp < ?::timestamp"
    )
    # Gold timestamps are naive UTC.
    naive = [t.astimezone(dt.UTC).replace(tzinfo=None).isoformat() for t in (start, end)]
    return duckdb.execute(query, naive).fetchone()[0]


def repo_objects(contents: RepoContents) -> list:
    """Everything `feast apply` would apply from a parsed repo."""
    return [
        *contents.entities,
        *contents.data_sources,
        *contents.feature_views,
        *contents.on_demand_feature_views,
        *contents.feature_services,
    ]


def apply_feature_repo(store: FeatureStore) -> RepoContents:
    """`feast apply` of feature_repo/ onto `store` (registry objects and online tables)."""
    contents = repo_contents()
    store.apply(repo_objects(contents))
    return contents
