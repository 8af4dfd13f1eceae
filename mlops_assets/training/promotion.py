"""The promotion gate and the decision log.

A new version becomes `challenger` only if it clears the config's absolute thresholds and is not
worse than the current `champion` by more than the configured margin on the same holdout (the new
dataset's test split, both models scored on it). The first version to clear the thresholds becomes
`champion`. Every decision and every alias move is appended to a log table, so "which version served
on date X" has an answer.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mlops_assets.model_config import ModelConfig
from mlops_assets.settings import Settings
from mlops_assets.training.registry import CHALLENGER, CHAMPION, alias_version, client, load_model

_META = sa.MetaData()
DECISIONS = sa.Table(
    "model_decisions",
    _META,
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


def decisions_engine(settings: Settings) -> sa.Engine:
    url = settings.decisions_db_url
    if not url:
        folder = settings.data_dir / "mlflow"
        folder.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{folder / 'decisions.db'}"
    engine = sa.create_engine(url)
    _META.create_all(engine)
    return engine


def record(
    settings: Settings,
    model: str,
    version: str,
    event: str,
    outcome: str,
    actor: str,
    reason: str,
    metrics: dict,
) -> None:
    with decisions_engine(settings).begin() as conn:
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


def history(settings: Settings, model: str) -> list[dict[str, Any]]:
    with decisions_engine(settings).connect() as conn:
        rows = conn.execute(
            sa.select(DECISIONS).where(DECISIONS.c.model == model).order_by(DECISIONS.c.id)
        )
        return [dict(r._mapping) for r in rows]


def last_event(settings: Settings, model: str, event: str) -> dict[str, Any] | None:
    """The newest decision-log entry of one kind (e.g. the current deployment), in one query."""
    query = (
        sa.select(DECISIONS)
        .where(DECISIONS.c.model == model, DECISIONS.c.event == event)
        .order_by(DECISIONS.c.id.desc())
        .limit(1)
    )
    with decisions_engine(settings).connect() as conn:
        row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def champion_at(settings: Settings, model: str, when: dt.datetime) -> str | None:
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
    with decisions_engine(settings).connect() as conn:
        return conn.execute(query).scalar()


def _naive_utc(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.UTC).replace(tzinfo=None) if when.tzinfo else when


def set_alias(
    settings: Settings, model: str, alias: str, version: str, actor: str, reason: str
) -> None:
    client(settings).set_registered_model_alias(model, alias, version)
    record(settings, model, version, "alias", alias, actor, reason, {})


@dataclass
class GateDecision:
    model: str
    version: str
    outcome: str  # champion | challenger | rejected
    reasons: list[str]
    metrics: dict[str, float]
    champion_before: str | None
    champion_roc_auc_on_holdout: float | None = None
    candidate_roc_auc_on_holdout: float | None = None

    def metadata(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "reasons"} | {
            "reasons": "; ".join(self.reasons)
        }


def _holdout_auc(
    settings: Settings, config: ModelConfig, versions: list[str], dvc_md5: str
) -> list[float]:
    """ROC AUC of each version on the test split of dataset `dvc_md5`."""
    from sklearn.metrics import roc_auc_score

    from mlops_assets.datasets.versioning import pull
    from mlops_assets.training.estimators import dataset_schema, feature_frame, read_split

    with tempfile.TemporaryDirectory(dir=settings.data_dir) as tmp:
        folder = pull(settings, dvc_md5, Path(tmp) / "dataset")
        test = read_split(folder, "test")
        X = feature_frame(test, dataset_schema(folder)["features"])
        y = test[config.label].to_numpy()
        return [
            float(
                roc_auc_score(
                    y, load_model(settings, config.registered_model, v).predict_proba(X)[:, 1]
                )
            )
            for v in versions
        ]


def gate(settings: Settings, config: ModelConfig, version: str, actor: str) -> GateDecision:
    """Decide on `version`, move aliases accordingly, record everything."""
    mlflow_client = client(settings)
    name = config.registered_model
    model_version = mlflow_client.get_model_version(name, version)
    run = mlflow_client.get_run(model_version.run_id)
    metrics = {
        k.removeprefix("model_test_"): v
        for k, v in run.data.metrics.items()
        if k.startswith("model_test_")
    }
    limits = config.thresholds
    reasons = []
    if metrics.get("roc_auc", 0.0) < limits.min_roc_auc:
        reasons.append(f"ROC AUC {metrics.get('roc_auc', 0):.4f} < {limits.min_roc_auc}")
    if metrics.get("pr_auc", 0.0) < limits.min_pr_auc:
        reasons.append(f"PR AUC {metrics.get('pr_auc', 0):.4f} < {limits.min_pr_auc}")
    if metrics.get("brier", 1.0) > limits.max_brier:
        reasons.append(f"Brier {metrics.get('brier', 1):.4f} > {limits.max_brier}")

    champion = alias_version(mlflow_client, name, CHAMPION)
    decision = GateDecision(name, version, "rejected", reasons, metrics, champion)
    if champion is not None and champion != version and not reasons:
        champ_auc, cand_auc = _holdout_auc(
            settings, config, [champion, version], run.data.tags["dvc_md5"]
        )
        decision.champion_roc_auc_on_holdout, decision.candidate_roc_auc_on_holdout = (
            champ_auc,
            cand_auc,
        )
        if cand_auc < champ_auc - limits.max_regression_vs_champion:
            reasons.append(
                f"ROC AUC {cand_auc:.4f} trails champion v{champion} ({champ_auc:.4f}) on the same holdout "
                f"by more than {limits.max_regression_vs_champion}"
            )
    if reasons:
        decision.outcome = "rejected"
    elif champion is None:
        decision.outcome = CHAMPION
        reasons.append("first version to clear the thresholds")
    else:
        decision.outcome = CHALLENGER
        reasons.append(f"clears the thresholds and is within the margin of champion v{champion}")
    reason = "; ".join(reasons)
    record(settings, name, version, "gate", decision.outcome, actor, reason, metrics)
    mlflow_client.set_model_version_tag(name, version, "gate_decision", decision.outcome)
    mlflow_client.set_model_version_tag(name, version, "gate_reason", reason)
    if decision.outcome in (CHAMPION, CHALLENGER):
        set_alias(settings, name, decision.outcome, version, actor, reason)
    return decision
