"""Refusals of the online materialization: windows that reach into the future."""

import datetime as dt

import dagster as dg
import pytest

from mlops_assets.defs.features.feast import feast_online_features
from mlops_assets.features.store import materialize_window
from mlops_assets.resources import resources_for


def test_todays_partition_does_not_exist_yet(settings):
    today = dt.datetime.now(dt.UTC).date().isoformat()
    with pytest.raises(dg.DagsterUnknownPartitionError, match=today):
        dg.materialize(
            [feast_online_features],
            partition_key=today,
            resources=resources_for(settings.env, settings),
            instance=dg.DagsterInstance.ephemeral(),
        )


def test_a_window_ending_in_the_future_is_refused_before_feast_runs(settings, resources):
    store = resources.feature_store.store()
    now = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="in the future"):
        materialize_window(store, now - dt.timedelta(days=1), now + dt.timedelta(hours=1), now=now)
    with pytest.raises(ValueError, match="empty materialization window"):
        materialize_window(store, now - dt.timedelta(days=1), now - dt.timedelta(days=1), now=now)
    assert not (settings.data_dir / "feast" / "online.db").exists()
