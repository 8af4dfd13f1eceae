"""The Feast store for the current environment, built from settings (the same values as
feature_repo/feature_store.yaml for the embedded profile, feature_store.prod.yaml in prod)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import tempfile
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
# The embedded profile's provider: Feast's local one, refusing inverted and future windows.
PROVIDER = "mlops_assets.features.online_store.CheckedLocalProvider"
PROJECT = "lakehouse_mlops"


def feast_dir(settings: Settings) -> Path:
    return settings.data_dir / "feast"


def cli_config_path(settings: Settings) -> Path:
    """The Feast config of this data folder, for the Feast CLI run in feature_repo/:
    `feast -f <this path> materialize-incremental ...` (see `write_cli_config`)."""
    return feast_dir(settings) / "feature_store.yaml"


def write_cli_config(settings: Settings) -> Path:
    """feature_repo/feature_store.yaml with this data folder's registry and online store (the
    committed file's `../data/feast/...` paths assume the default data folder). The code location
    loads this same file, so the CLI and Dagster always see the same store."""
    import yaml

    config = yaml.safe_load((FEATURE_REPO / "feature_store.yaml").read_text())
    folder = feast_dir(settings).resolve()
    config["registry"]["path"] = str(folder / "registry.db")
    config["online_store"]["path"] = str(folder / "online.db")
    text = (
        "# Generated from feature_repo/feature_store.yaml for this data folder; run the Feast CLI\n"
        "# in feature_repo/ with MLOPS_DATA_DIR set to the data folder and `-f <this file>`.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    path = cli_config_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        # Atomic: a concurrent reader (another run, the CLI) sees the old file or the new one.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".feature_store.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; this is an ordinary config file
        os.replace(tmp, path)
    return path


def repo_config(settings: Settings) -> RepoConfig:
    from feast.repo_config import load_repo_config

    if settings.env is Environment.PROD:
        return load_repo_config(FEATURE_REPO, FEATURE_REPO / "feature_store.prod.yaml")
    return load_repo_config(FEATURE_REPO, write_cli_config(settings))


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


def check_window(
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime | None = None,
    *,
    allow_empty: bool = False,
) -> tuple[dt.datetime, dt.datetime]:
    """The window [start, end) as aware UTC times (naive ones are UTC, as Feast takes them), or
    ValueError for a window Feast would record wrongly as a materialization interval: an end in
    the future (the incremental watermark would pass now and later data be skipped, feast #4222),
    or a start after the end (an inverted interval that writes nothing yet moves the watermark)."""
    from feast.utils import make_tzaware

    start, end = make_tzaware(start), make_tzaware(end)
    now = make_tzaware(now) if now is not None else dt.datetime.now(dt.UTC)
    if end > now:
        raise ValueError(f"refusing to materialize up to {end.isoformat()}, which is in the future")
    if start > end:
        raise ValueError(
            f"inverted materialization window: {start.isoformat()} is after {end.isoformat()}"
        )
    if start == end and not allow_empty:
        raise ValueError(f"empty materialization window {start.isoformat()} .. {end.isoformat()}")
    return start, end


def materialize_window(
    store: FeatureStore, start: dt.datetime, end: dt.datetime, now: dt.datetime | None = None
) -> dict[str, int | None]:
    """Materialize every feature view for event times in [start, end) and record the interval
    in the Feast registry, as `feast materialize` does. The embedded SQLite store is loaded by
    the vectorized bulk path; other stores (Redis in prod) through Feast. Returns rows written
    per view (None where Feast does not report it)."""
    start, end = check_window(start, end, now)
    if store.config.online_store.type == STORE_TYPE:
        from mlops_assets.features.bulk import bulk_materialize

        return bulk_materialize(store, start, end, now=now)
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
