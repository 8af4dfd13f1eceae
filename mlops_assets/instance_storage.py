"""The embedded Dagster instance's event log: Dagster's SQLite storage, with its writes made cheap.

A range run records one materialization per asset and day (720 for the demo's 240 landing days,
240 more for the online store). Dagster's SQLite event log builds a new SQLAlchemy engine for each of
the 3-4 connections one such event opens, so nothing it compiles is ever reused: about 11 ms per
event here, most of it SQL compilation and engine set-up, a tenth of the lakehouse stage. This
storage keeps one engine per shard (still no pooled connection: each write opens and closes its own,
so files can be deleted and other processes lock as before) and writes a batch of events in one
transaction per shard when Dagster hands it one (`DAGSTER_EVENT_BATCH_SIZE`: the partitions of one
range materialization). Same files, schema and semantics as `SqliteEventLogStorage`; the production
instance (PostgreSQL) does not use it. `deploy/dagster/local/dagster.yaml` configures it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy.pool import NullPool

from mlops_assets.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from mlops_assets.settings import Settings

# How many events of one batch Dagster buffers before writing them (DagsterEventBatchMetadata).
EVENT_BATCH_SIZE = "500"
RUN_ENGINES_KEPT = 16  # a long-lived daemon or UI sees every run's shard: keep the recent ones


class LocalEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with one engine per shard and batched writes."""

    def __init__(self, base_dir: str, inst_data: Any = None):
        self._engines: OrderedDict[str, Any] = OrderedDict()
        super().__init__(base_dir, inst_data=inst_data)
        # Dagster hands batches to the storage only when this is set; every process that opens
        # this instance (the demo, the daemon, its run workers, the UI) then writes them so.
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)

    @classmethod
    def config_type(cls) -> Any:
        import dagster as dg

        return {"base_dir": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> LocalEventLogStorage:
        base_dir = config_value.get("base_dir")
        if not base_dir:
            # Where Dagster's default SQLite storage keeps it: $DAGSTER_HOME/storage.
            home = os.environ.get("DAGSTER_HOME")
            if not home:
                raise ValueError(
                    "LocalEventLogStorage needs `base_dir` in its config or DAGSTER_HOME set "
                    "(`mlops prepare` installs a dagster.yaml that names it)"
                )
            base_dir = os.path.join(home, "storage")
        return cls(base_dir, inst_data=inst_data)

    def _engine(self, shard: str) -> Any:
        engine = self._engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=NullPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            self._engines[shard] = engine
            while len(self._engines) > RUN_ENGINES_KEPT + 1:  # + the index shard's
                oldest = next(k for k in self._engines if k != "index")
                self._engines.pop(oldest).dispose()
        self._engines.move_to_end(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Any]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def store_event_batch(self, events: Sequence[Any]) -> None:
        """One transaction per shard for a batch of asset events (what Dagster batches: the
        partitions of one materialization); anything else goes through `store_event` as before."""
        from dagster._core.events import ASSET_EVENTS

        batchable = (
            all(e.is_dagster_event and e.dagster_event_type in ASSET_EVENTS for e in events)
            and len({e.run_id for e in events}) == 1
        )
        if not batchable or len(events) < 2:
            for event in events:
                self.store_event(event)
            return
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(self.prepare_insert_event_batch(events))
        with self.index_transaction() as conn:
            event_ids = []
            for event in events:
                result = conn.execute(self.prepare_insert_event(event))
                event_ids.append(result.inserted_primary_key[0])
            self._store_asset_event_tags(conn, list(events), event_ids)
            for event, event_id in zip(events, event_ids, strict=True):
                self._store_asset_event(conn, event, event_id)

    def _store_asset_check_evaluation_planned(self, event: Any, event_id: int | None) -> None:
        """Dagster's rows (one per planned partition), with the event serialized once instead of
        once per row: a 240-day range plans ~13,500 check rows, 3-5 s of the lakehouse stage."""
        from dagster._core.storage.asset_check_execution_record import (
            AssetCheckExecutionRecordStatus,
        )
        from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
        from dagster_shared.serdes import serialize_value

        planned = event.dagster_event.event_specific_data
        subset = planned.partitions_subset
        partition_keys = subset.get_partition_keys() if subset else [None]
        shared = dict(
            asset_key=planned.asset_key.to_string(),
            check_name=planned.check_name,
            run_id=event.run_id,
            execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
            evaluation_event=serialize_value(event),
            evaluation_event_timestamp=self._event_insert_timestamp(event),
            evaluation_event_storage_id=event_id,
        )
        with self.index_connection() as conn:
            conn.execute(
                AssetCheckExecutionsTable.insert(),
                [{**shared, "partition": key} for key in partition_keys],
            )

    def delete_events(self, run_id: str) -> None:
        super().delete_events(run_id)
        self._engines.pop(run_id, None)

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
        super().dispose()


LOCAL_CONFIG = PROJECT_ROOT / "deploy" / "dagster" / "local" / "dagster.yaml"


def install_local_instance(home: Path) -> Path:
    """`home/dagster.yaml` from deploy/dagster/local/dagster.yaml, unless the home has one, with
    this event log's folder written out: Dagster gives a custom storage its config only, not the
    instance's home, so without it the storage follows $DAGSTER_HOME (every Dagster process sets
    it; `DagsterInstance.from_config(home)` in another process need not)."""
    import yaml

    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        text = LOCAL_CONFIG.read_text()
        marker = "  class: LocalEventLogStorage\n"
        assert marker in text, f"{LOCAL_CONFIG} no longer configures LocalEventLogStorage"
        folder = yaml.safe_dump({"base_dir": str(home.resolve() / "storage")}).strip()
        text = text.replace(marker, f"{marker}  config:\n    {folder}\n")
        config.write_text(text)
    return config


SERVICES_CONFIG = PROJECT_ROOT / "deploy" / "dagster" / "services" / "dagster.yaml"


def install_services_instance(home: Path, settings: Settings) -> Path:
    """`home/dagster.yaml` of the services profile: Dagster's PostgreSQL storage (rewritten each
    time, so a changed MLOPS_POSTGRES_URL is followed)."""
    from mlops_assets.service_stores import dagster_yaml

    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    text = dagster_yaml(settings, SERVICES_CONFIG)
    if not config.exists() or config.read_text() != text:
        config.write_text(text)
    return config
