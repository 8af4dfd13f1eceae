"""The decision log: every gate decision, alias move and rollout is appended to one table
(`model_decisions`, in the registry's decisions database), so "which version served on date X" has
an answer and every change says who made it and why."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa

from mlops_assets.training.registry import CHAMPION, Registry, client, local_folder

METADATA = sa.MetaData()
DECISIONS = sa.Table(
    "model_decisions",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime, nullable=False),  # naive UTC: the same in SQLite and PostgreSQL
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("version", sa.String(50), nullable=False),
    sa.Column("event", sa.String(50), nullable=False),  # gate | alias
    sa.Column(
        "outcome", sa.String(50), nullable=False
    ),  # champion | challenger | rejected | alias name
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
)


def decisions_engine(registry: Registry) -> sa.Engine:
    """The decisions database, with its tables created on first use."""
    local_folder(registry.decisions_url)
    engine = sa.create_engine(registry.decisions_url)
    METADATA.create_all(engine)
    return engine


def record(
    registry: Registry,
    model: str,
    version: str,
    event: str,
    outcome: str,
    actor: str,
    reason: str,
    metrics: dict,
) -> None:
    with decisions_engine(registry).begin() as conn:
        conn.execute(
            DECISIONS.insert().values(
                at=_naive_utc(dt.datetime.now(dt.UTC)),
                model=model,
                version=version,
                event=event,
                outcome=outcome,
                actor=actor,
                reason=reason,
                metrics=json.dumps(metrics, sort_keys=True),
            )
        )


def history(registry: Registry, model: str) -> list[dict[str, Any]]:
    with decisions_engine(registry).connect() as conn:
        rows = conn.execute(
            sa.select(DECISIONS).where(DECISIONS.c.model == model).order_by(DECISIONS.c.id)
        )
        return [dict(r._mapping) for r in rows]


def last_event(registry: Registry, model: str, event: str) -> dict[str, Any] | None:
    """The newest decision-log entry of one kind (e.g. the current deployment), in one query."""
    query = (
        sa.select(DECISIONS)
        .where(DECISIONS.c.model == model, DECISIONS.c.event == event)
        .order_by(DECISIONS.c.id.desc())
        .limit(1)
    )
    with decisions_engine(registry).connect() as conn:
        row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def entries_after(
    registry: Registry, after_id: int | None, since: dt.datetime, limit: int = 500
) -> list[dict[str, Any]]:
    """Decision-log entries of every model, oldest first: those with an id above `after_id`, or,
    with no id yet, those recorded at or after `since` (what a reader with a cursor follows)."""
    newer = (
        DECISIONS.c.id > after_id if after_id is not None else DECISIONS.c.at >= _naive_utc(since)
    )
    query = sa.select(DECISIONS).where(newer).order_by(DECISIONS.c.id).limit(limit)
    with decisions_engine(registry).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def champion_at(registry: Registry, model: str, when: dt.datetime) -> str | None:
    """The version that held the champion alias at `when` (None before the first one)."""
    query = (
        sa.select(DECISIONS.c.version)
        .where(
            DECISIONS.c.model == model,
            DECISIONS.c.event == "alias",
            DECISIONS.c.outcome == CHAMPION,
            DECISIONS.c.at <= _naive_utc(when),
        )
        .order_by(DECISIONS.c.at.desc(), DECISIONS.c.id.desc())
        .limit(1)
    )
    with decisions_engine(registry).connect() as conn:
        return conn.execute(query).scalar()


def _naive_utc(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.UTC).replace(tzinfo=None) if when.tzinfo else when


def set_alias(
    registry: Registry, model: str, alias: str, version: str, actor: str, reason: str
) -> None:
    client(registry).set_registered_model_alias(model, alias, version)
    record(registry, model, version, "alias", alias, actor, reason, {})
