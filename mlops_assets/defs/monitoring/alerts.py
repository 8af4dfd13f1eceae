"""The alert sensor: every few seconds it turns what happened since its cursor into alerts (failed
monitor checks, the online drift check included; failed promotion gates; launched retraining
runs; every promotion and rollback in the decision log, whoever made it: API, CLI or a run; the
local model server's error rate over its limit) and posts each incident once to the webhook of
MLOPS_ALERTS_WEBHOOK_URL (unset: logged only).
The decisions are mlops_assets/monitoring/alerts.py; delivery (de-duplication, retries, the
bounded queue) mlops_assets/monitoring/webhook.py. A delivery failure never fails a tick: what
was not delivered stays queued in the cursor for the next one."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import dagster as dg

from mlops_assets.defs.keys import (
    deployment_key,
    monitor_key,
    promotion_key,
    retrain_job_name,
)
from mlops_assets.defs.tags import SENSOR_INTERVAL_S, TRIGGER_TAG
from mlops_assets.defs.training.assets import GATE_CHECK
from mlops_assets.model_config import model_configs
from mlops_assets.monitoring.alerts import (
    CheckEvaluation,
    ErrorRateLimit,
    Incidents,
    RolloutSeen,
    RunSeen,
    Watched,
    asset_link,
    error_rate_incidents,
    incidents,
    scrape,
    serving_counters,
)
from mlops_assets.monitoring.registry import MONITORS
from mlops_assets.monitoring.webhook import Outbox, webhook_sender
from mlops_assets.resources import ModelRegistryResource
from mlops_assets.serving.deployers import DeployerResource
from mlops_assets.settings import Settings, get_settings

ALERT_SENSOR = "lifecycle_alerts"
ONLINE_DRIFT = ("online_drift", "online_drift_within_thresholds")  # the stream's monitor
FIRST_LOOKBACK_S = 600  # a sensor with no cursor yet reports what happened in the last 10 min
RUN_OVERLAP_S = 120  # runs are re-read this far back (an update can land late); keys de-duplicate
SEEN_PER_CHECK = 50  # check evaluation ids remembered per check
DELIVERY_BUDGET_S = 10.0  # a tick never spends longer than this (+ one timeout) on the webhook


def watched() -> Watched:
    """The checks and jobs of every configured model that alerts are about."""
    monitors = [(m.name, m.check) for m in MONITORS.values()]
    monitors += [ONLINE_DRIFT] if ONLINE_DRIFT[0] not in MONITORS else []
    checks, gates, retrains, deployments = {}, {}, {}, {}
    for model in model_configs().values():
        for monitor, check in monitors:
            checks[(tuple(monitor_key(model, monitor).path), check)] = (model.name, monitor)
        gates[(tuple(promotion_key(model).path), GATE_CHECK)] = model.name
        retrains[retrain_job_name(model)] = model.name
        deployments[model.name] = tuple(deployment_key(model).path)
    return Watched(checks, gates, retrains, deployments)


def _check_keys(watch: Watched) -> list[dg.AssetCheckKey]:
    return [
        dg.AssetCheckKey(dg.AssetKey(list(path)), check)
        for path, check in [*watch.monitor_checks, *watch.gate_checks]
    ]


def new_check_evaluations(
    instance: dg.DagsterInstance, watch: Watched, seen: dict[str, list[int]], since: float | None
) -> list[CheckEvaluation]:
    """Finished evaluations of the watched checks not seen before (with no cursor yet: those
    after `since`); `seen` (check -> recent record ids) is updated."""
    storage = instance.event_log_storage
    keys = _check_keys(watch)
    latest = storage.get_latest_asset_check_execution_by_key(keys)
    found = []
    for key, record in latest.items():
        name = key.to_user_string()
        if record.id in seen.get(name, []):
            continue
        for item in storage.get_asset_check_execution_history(key, limit=SEEN_PER_CHECK):
            evaluation = item.event.asset_check_evaluation if item.event else None
            if evaluation is None or item.id in seen.get(name, []):
                continue  # planned, not finished yet: read again next tick
            # The newest ids (ids grow): the history read next time is among them.
            seen[name] = sorted({*seen.get(name, []), item.id})[-SEEN_PER_CHECK:]
            if since is not None and item.event.timestamp < since:
                continue
            found.append(_evaluation(item, key, evaluation))
    return found


def _evaluation(item: Any, key: dg.AssetCheckKey, evaluation: Any) -> CheckEvaluation:
    metadata = list((evaluation.metadata or {}).items())[:4]
    summary = "; ".join(f"{k}: {str(getattr(v, 'value', v))[:120]}" for k, v in metadata)
    return CheckEvaluation(
        item.id,
        tuple(key.asset_key.path),
        key.name,
        bool(evaluation.passed),
        item.run_id,
        summary[:400],
    )


def runs_since(instance: dg.DagsterInstance, watch: Watched, since: float) -> list[RunSeen]:
    """Runs of the retraining jobs created or updated after `since`."""
    after = dt.datetime.fromtimestamp(since, dt.UTC)
    runs = []
    for job in watch.retrain_jobs:
        records = instance.get_run_records(
            filters=dg.RunsFilter(job_name=job, updated_after=after), limit=100
        )
        for record in records:
            run = record.dagster_run
            tags = run.tags or {}
            runs.append(
                RunSeen(
                    run.run_id,
                    run.job_name,
                    run.status.value,
                    tags.get(TRIGGER_TAG, ""),
                    tags.get("mlops/reason", ""),
                )
            )
    return runs


def new_rollouts(registry: Any, cursor: dict[str, Any], since: float) -> list[RolloutSeen]:
    """Promotions and rollbacks recorded in the decision log after the cursor's last entry (with
    none yet: after `since`), by any door: the control API, the CLI, a Dagster run."""
    from mlops_assets.training.decisions import entries_after

    names = {m.registered_model: m.name for m in model_configs().values()}
    entries = entries_after(
        registry, cursor.get("decision_id"), dt.datetime.fromtimestamp(since, dt.UTC)
    )
    if entries:
        cursor["decision_id"] = entries[-1]["id"]
    return [
        RolloutSeen(e["id"], names[e["model"]], e["version"], e["outcome"], e["actor"], e["reason"])
        for e in entries
        if e["event"] == "rollout" and e["model"] in names
    ]


def serving_alerts(
    deployer: DeployerResource, settings: Settings, cursor: dict[str, Any], now: float
) -> list:
    """The local model server's error rate, from its /metrics between ticks. A deployer with no
    local server (a cluster's InferenceService) has none here: Prometheus's rule watches it."""
    models = list(model_configs().values())
    state = deployer.state(models[0].name) if models else None
    text = None
    if state and "endpoint" in state:
        text = scrape(f"{state['endpoint']}/metrics", settings.alerts_timeout_seconds)
    if text is None:  # no server, or it does not answer: the next one starts afresh
        cursor.pop("baselines", None)
        cursor.pop("scraped_at", None)
        return []
    limit = ErrorRateLimit(
        settings.alerts_error_rate_limit,
        settings.alerts_min_requests,
        settings.alerts_error_window_seconds,
    )
    ui = settings.alerts_ui_url
    known = {m.name: m for m in models}
    # Errors of model "*" (a path naming no served model) are nobody's error rate.
    counters = {m: c for m, c in serving_counters(text).items() if m in known}
    open_incidents = cursor.setdefault("error_incidents", {})
    alerts, cursor["baselines"] = error_rate_incidents(
        cursor.get("baselines", {}),
        counters,
        now,
        limit,
        open_incidents,
        lambda model: asset_link(ui, deployment_key(known[model]).path),
        cursor.get("scraped_at"),
    )
    cursor["scraped_at"] = now
    return alerts


def _deliver(context: dg.SensorEvaluationContext, outbox: Outbox, settings: Settings) -> str:
    secret = settings.alerts_webhook_url
    url = secret.get_secret_value().strip() if secret is not None else ""
    if not url:
        for alert in list(outbox.pending):
            context.log.warning(f"alert (no webhook): {alert.line()}")
            outbox.mark_sent(alert)
        return "no webhook configured (MLOPS_ALERTS_WEBHOOK_URL): alerts are logged only"
    try:
        report = outbox.deliver(
            webhook_sender(url, settings.alerts_timeout_seconds), budget=DELIVERY_BUDGET_S
        )
    except Exception as err:  # a bug in delivery must not stop the sensor either
        context.log.exception("alert delivery failed")
        return f"delivery failed ({type(err).__name__}); {len(outbox.pending)} queued"
    if report["error"]:
        context.log.warning(f"alert webhook: {report['error']} ({report['queued']} queued)")
    return f"sent {report['sent']}, dropped {report['dropped']}, queued {report['queued']}" + (
        f" (last error: {report['error']})" if report["error"] else ""
    )


def evaluate(
    context: dg.SensorEvaluationContext,
    deployer: DeployerResource,
    model_registry: ModelRegistryResource,
    now: float | None = None,
) -> dg.SkipReason:
    """One tick: read what happened, decide the alerts, deliver them, keep the state."""
    settings = get_settings()
    now = time.time() if now is None else now
    cursor = json.loads(context.cursor) if context.cursor else {}
    first = not cursor
    watch = watched()
    seen = cursor.setdefault("checks_seen", {})
    checks = new_check_evaluations(
        context.instance, watch, seen, now - FIRST_LOOKBACK_S if first else None
    )
    runs = runs_since(context.instance, watch, cursor.get("runs_after", now - FIRST_LOOKBACK_S))
    rollouts = new_rollouts(model_registry.registry(), cursor, now - FIRST_LOOKBACK_S)
    state = Incidents(cursor.get("open", {}))
    alerts = incidents(checks, runs, watch, state, settings.alerts_ui_url, rollouts)
    try:
        alerts += serving_alerts(deployer, settings, cursor, now)
    except Exception:  # the server's metrics are one source of several: the others go on
        context.log.exception("reading the model server's metrics failed")
    outbox = Outbox.from_json(cursor.get("outbox"))
    new = outbox.add(alerts)
    for alert in new:
        context.log.info(f"alert: {alert.line()}")
    delivery = _deliver(context, outbox, settings)
    cursor.update(open=state.open, runs_after=now - RUN_OVERLAP_S, outbox=outbox.to_json())
    context.update_cursor(json.dumps(cursor, sort_keys=True))
    return dg.SkipReason(f"{len(new)} new alert(s); {delivery}")


@dg.sensor(
    name=ALERT_SENSOR,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Posts one Slack-compatible alert per incident to MLOPS_ALERTS_WEBHOOK_URL: monitor "
        "checks failing (drift), retraining launched, gate failed, canary promoted or rolled "
        "back, the local model server's error rate over its limit. Undelivered alerts are "
        "retried on the next ticks."
    ),
)
def lifecycle_alerts(
    context: dg.SensorEvaluationContext,
    deployer: DeployerResource,
    model_registry: ModelRegistryResource,
):
    return evaluate(context, deployer, model_registry)


@dg.definitions
def alert_sensors() -> dg.Definitions:
    return dg.Definitions(sensors=[lifecycle_alerts])
