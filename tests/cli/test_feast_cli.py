"""A Feast user's workflow in feature_repo/, with the real `feast` CLI: `plan` with the committed
embedded config, and `apply`, `materialize` and `materialize-incremental` against a generated
shop's store after the project's bulk path (the Dagster asset's) loaded a first window."""

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from feast import FeatureStore
from feast.repo_config import load_repo_config

from mlops_assets.features.bulk import bulk_materialize
from mlops_assets.features.store import (
    FEATURE_REPO,
    PROVIDER,
    apply_feature_repo,
    cli_config_path,
    materialize_window,
)
from mlops_assets.testing import build_shop, scratch_settings, small_world
from mlops_assets.testing import online_rows as stored_rows

FEAST = Path(sys.executable).parent / "feast"
DAYS = 60
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
MIDDLE = dt.datetime(2025, 2, 1, tzinfo=dt.UTC)
END = START + dt.timedelta(days=DAYS)  # 2025-03-02: every landed day
VIEWS = {
    "customer_orders",
    "customer_profile",
    "customer_support",
    "order_details",
    "order_velocity",
}


def feast(config: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """The Feast CLI as a user runs it: in feature_repo/, with this data folder's config."""
    return subprocess.run(
        [str(FEAST), "-f", str(config), *args],
        cwd=FEATURE_REPO,
        env={**os.environ, "MLOPS_DATA_DIR": str(data_dir), "FEAST_USAGE": "False"},
        capture_output=True,
        text=True,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def scratch_config(source: Path, folder: Path) -> Path:
    """The same Feast config with the registry and online store in `folder`."""
    config = yaml.safe_load(source.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    config["registry"]["path"] = str(folder / "registry.db")
    config["online_store"]["path"] = str(folder / "online.db")
    path = folder / "feature_store.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def intervals(config: Path) -> dict[str, list[tuple[str, str]]]:
    """The materialization intervals in a registry, as the CLI left them (read fresh)."""
    store = FeatureStore(config=load_repo_config(FEATURE_REPO, config))
    return {
        v.name: [(a.isoformat(), b.isoformat()) for a, b in v.materialization_intervals]
        for v in store.list_feature_views()
    }


def online_rows(config: Path) -> list[tuple]:
    return stored_rows(yaml.safe_load(config.read_text())["online_store"]["path"])


def iso(*pairs: tuple[dt.datetime, dt.datetime]) -> dict[str, list[tuple[str, str]]]:
    return {v: [(a.isoformat(), b.isoformat()) for a, b in pairs] for v in VIEWS}


def test_feast_plan_runs_in_the_feature_repo(tmp_path):
    config = scratch_config(FEATURE_REPO / "feature_store.yaml", tmp_path)
    proc = subprocess.run(
        [str(FEAST), "-c", str(FEATURE_REPO), "-f", str(config), "plan"],
        cwd=FEATURE_REPO,
        env={**os.environ, "MLOPS_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Created feature service churn_v1" in proc.stdout
    assert "Created on demand feature view customer_recency" in proc.stdout


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """60 landed days of a 3000-customer shop, gold built, feature_repo/ applied."""
    root = tmp_path_factory.mktemp("feast_cli")
    with scratch_settings(root / "data", small_world(3000)) as settings:
        store = build_shop(settings, days=DAYS)
        yield settings, store


@pytest.mark.slow
def test_the_code_location_and_the_cli_share_one_config(shop):
    settings, store = shop
    generated = yaml.safe_load(cli_config_path(settings.data_dir).read_text())
    committed = yaml.safe_load((FEATURE_REPO / "feature_store.yaml").read_text())
    folder = settings.data_dir.resolve() / "feast"
    assert generated["registry"].pop("path") == str(folder / "registry.db")
    assert generated["online_store"].pop("path") == str(folder / "online.db")
    assert committed["registry"].pop("path") == "../data/feast/registry.db"
    assert committed["online_store"].pop("path") == "../data/feast/online.db"
    assert generated == committed
    assert committed["provider"] == PROVIDER == store.config.provider


@pytest.mark.slow
def test_incremental_cli_continues_where_the_bulk_path_stopped(shop, tmp_path):
    settings, store = shop
    data, config = settings.data_dir, cli_config_path(settings.data_dir)
    # 1. The Dagster asset's path loads January and records it, as `feast materialize` would.
    written = materialize_window(store, START, MIDDLE)
    assert set(written) == VIEWS and min(written.values()) > 100
    assert intervals(config) == iso((START, MIDDLE))
    # 2. A Feast user re-applies the repo: the watermark survives (feast #2905).
    ok(feast(config, data, "apply"))
    assert intervals(config) == iso((START, MIDDLE))
    # 3. ... and continues incrementally from it.
    proc = ok(feast(config, data, "materialize-incremental", END.strftime("%Y-%m-%dT%H:%M:%S")))
    assert "from 2025-02-01 00:00:00+00:00" in re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    assert intervals(config) == iso((START, MIDDLE), (MIDDLE, END))
    incremental = online_rows(config)
    assert len(incremental) > 1000
    # Nothing newer than the window's end was written, and February's snapshots were.
    event_ts = [r[4] for r in incremental if r[0].endswith("__rows")]
    assert max(event_ts) < END.timestamp() and max(event_ts) >= MIDDLE.timestamp()

    # A second registry and online store over the same gold: Feast's own path, by the CLI.
    other = scratch_config(config, tmp_path / "feast_b")
    ok(feast(other, data, "apply"))
    # The reported failure: on a fresh registry `materialize-incremental` starts at now - ttl
    # (2026), after the 2025 end; it used to write nothing and record that inverted interval.
    refused = feast(other, data, "materialize-incremental", END.strftime("%Y-%m-%dT%H:%M:%S"))
    assert refused.returncode != 0
    assert "no materialization is recorded for this view yet" in refused.stderr
    assert intervals(other) == {v: [] for v in VIEWS}
    ok(feast(other, data, "materialize", "2025-01-01T00:00:00", END.strftime("%Y-%m-%dT%H:%M:%S")))
    assert intervals(other) == iso((START, END))
    assert online_rows(other) == incremental

    # A third: the bulk path over the whole window writes the same bytes, records the same interval.
    third = scratch_config(config, tmp_path / "feast_c")
    bulk_store = FeatureStore(config=load_repo_config(FEATURE_REPO, third))
    apply_feature_repo(bulk_store)
    bulk_materialize(bulk_store, START, END)
    assert intervals(third) == iso((START, END))
    assert online_rows(third) == incremental


@pytest.mark.slow
def test_no_inverted_or_future_interval_is_ever_recorded(shop, tmp_path):
    settings, _ = shop
    config = scratch_config(cli_config_path(settings.data_dir), tmp_path / "feast")
    store = FeatureStore(config=load_repo_config(FEATURE_REPO, config))
    apply_feature_repo(store)
    bulk_materialize(store, START, MIDDLE)
    before, rows = intervals(config), online_rows(config)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with pytest.raises(ValueError, match="inverted materialization window"):
        bulk_materialize(store, MIDDLE, START)
    with pytest.raises(ValueError, match="in the future"):
        bulk_materialize(store, START, future)
    with pytest.raises(ValueError, match="in the future"):
        bulk_materialize(store, START, MIDDLE, now=MIDDLE - dt.timedelta(hours=1))
    # Feast's own entry points go through the project's provider and refuse the same windows.
    with pytest.raises(ValueError, match="already materialized up to 2025-02-01"):
        store.materialize_incremental(dt.datetime(2025, 1, 15, tzinfo=dt.UTC))
    with pytest.raises(ValueError, match="in the future"):
        store.materialize_incremental(future)
    with pytest.raises(ValueError, match="in the future"):
        store.materialize(START, future)
    assert intervals(config) == before
    assert online_rows(config) == rows
