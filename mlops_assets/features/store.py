"""The Feast store over feature_repo/: the committed feature_store.yaml with a data folder's paths
(the embedded profile), or another config file such as feature_store.prod.yaml (production;
`mlops_assets.resources` picks). Also: parsing the repo as `feast apply` does, and materializing a
window."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_assets.features.windows import check_window
from mlops_assets.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.repo_contents import RepoContents

    from mlops_assets.lakehouse.warehouse import Warehouse

FEATURE_REPO = PROJECT_ROOT / "feature_repo"
# The embedded online store's type path (see online_store.py).
STORE_TYPE = "mlops_assets.features.online_store.MonotonicSqliteOnlineStore"
# The embedded profile's provider: Feast's local one, refusing inverted and future windows.
PROVIDER = "mlops_assets.features.online_store.CheckedLocalProvider"
PROJECT = "lakehouse_mlops"


def feast_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "feast"


def cli_config_path(data_dir: str | Path) -> Path:
    """The Feast config of this data folder, for the Feast CLI run in feature_repo/:
    `feast -f <this path> materialize-incremental ...` (see `write_cli_config`)."""
    return feast_dir(data_dir) / "feature_store.yaml"


def write_cli_config(
    data_dir: str | Path,
    registry: dict[str, Any] | None = None,
    online_store: dict[str, Any] | None = None,
) -> Path:
    """feature_repo/feature_store.yaml with this data folder's registry and online store (the
    committed file's `../data/feast/...` paths assume the default data folder), or with the
    `registry` and `online_store` given (the services profile's PostgreSQL and Redis). The code
    location loads this same file, so the CLI and Dagster always see the same store."""
    import yaml

    config = yaml.safe_load((FEATURE_REPO / "feature_store.yaml").read_text())
    folder = feast_dir(data_dir).resolve()
    config["registry"] = registry or {**config["registry"], "path": str(folder / "registry.db")}
    config["online_store"] = online_store or {
        **config["online_store"],
        "path": str(folder / "online.db"),
    }
    text = (
        "# Generated from feature_repo/feature_store.yaml for this data folder; run the Feast CLI\n"
        "# in feature_repo/ with MLOPS_DATA_DIR set to the data folder and `-f <this file>`.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    path = cli_config_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        # Atomic: a concurrent reader (another run, the CLI) sees the old file or the new one.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".feature_store.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; this is an ordinary config file
        os.replace(tmp, path)
    return path


def store_from_yaml(path: str | Path) -> FeatureStore:
    """A Feast store over feature_repo/ with the config file at `path`."""
    from feast import FeatureStore
    from feast.repo_config import load_repo_config

    return FeatureStore(config=load_repo_config(FEATURE_REPO, Path(path)))


def embedded_store(data_dir: str | Path) -> FeatureStore:
    """The embedded store of a data folder: the committed config with that folder's paths."""
    return store_from_yaml(write_cli_config(data_dir))


def services_store(data_dir: str | Path, registry_url: str, redis_connection: str) -> FeatureStore:
    """Production's stores on one node: the SQL registry on PostgreSQL (a SQLAlchemy URL) and
    the Redis online store (Feast's `host:port,db=N` connection string); the offline store reads
    gold's Parquet on S3 as on the embedded profile."""
    registry = {
        "registry_type": "sql",
        "path": registry_url,
        "cache_ttl_seconds": 60,
        "sqlalchemy_config_kwargs": {"pool_pre_ping": True},
    }
    online = {"type": "redis", "connection_string": redis_connection}
    # The provider points the offline store's DuckDB at S3 (online_store.CheckedLocalProvider).
    return store_from_yaml(write_cli_config(data_dir, registry, online))


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
    store: FeatureStore,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime | None = None,
    views: list[str] | None = None,
) -> dict[str, int | None]:
    """Materialize every feature view (or `views`, through Feast) for event times in [start,
    end) and record the interval in the Feast registry, as `feast materialize` does. The embedded
    SQLite store is loaded by the vectorized bulk path; other stores (Redis in prod) through
    Feast. Returns rows written per view (None where Feast does not report it)."""
    start, end = check_window(start, end, now)
    if store.config.online_store.type == STORE_TYPE and views is None:
        from mlops_assets.features.bulk import bulk_materialize

        return bulk_materialize(store, start, end, now=now)
    views = views or [v.name for v in store.list_feature_views()]
    store.materialize(start_date=start, end_date=end, feature_views=views)
    return dict.fromkeys(views)


def source_rows_between(
    warehouse: Warehouse, tables: list[str], start: dt.datetime, end: dt.datetime
) -> dict[str, int]:
    """Rows of each gold feature table (`schema.name`) with event times in [start, end) (naive
    UTC in gold)."""
    naive = [t.astimezone(dt.UTC).replace(tzinfo=None) for t in (start, end)]
    counts = {}
    for table in tables:
        frame = warehouse.query(
            f"select count(*) as n from {table} "
            f"where event_timestamp >= timestamp '{naive[0]:%Y-%m-%d %H:%M:%S}' "
            f"and event_timestamp < timestamp '{naive[1]:%Y-%m-%d %H:%M:%S}'"
        )
        counts[table] = int(frame["n"].iloc[0])
    return counts


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
