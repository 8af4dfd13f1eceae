"""Refusals of the online materialization: windows that reach into the future."""

import datetime as dt

import dagster as dg
import pytest

from mlops_assets.defs.features.assets import feast_online_features
from mlops_assets.defs.features.resources import FeatureStoreResource
from mlops_assets.features.store import feature_store, materialize_window


def test_todays_partition_does_not_exist_yet(data_dir):
    today = dt.datetime.now(dt.UTC).date().isoformat()
    with pytest.raises(dg.DagsterUnknownPartitionError, match=today):
        dg.materialize(
            [feast_online_features],
            partition_key=today,
            resources={"feature_store": FeatureStoreResource()},
            instance=dg.DagsterInstance.ephemeral(),
        )


def test_a_window_ending_in_the_future_is_refused_before_feast_runs(settings):
    store = feature_store(settings)
    now = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="in the future"):
        materialize_window(store, now - dt.timedelta(days=1), now + dt.timedelta(hours=1), now=now)
    with pytest.raises(ValueError, match="empty materialization window"):
        materialize_window(store, now - dt.timedelta(days=1), now - dt.timedelta(days=1), now=now)
    assert not (settings.data_dir / "feast" / "online.db").exists()
