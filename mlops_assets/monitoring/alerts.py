"""Alerts: what in the platform's life is an incident worth telling someone about, and getting it to
them. A failed monitor check (drift, online drift, performance, data quality), a launched
retraining, a failed promotion gate, a canary promoted or rolled back, a serving error rate over
its limit: each becomes one `Alert`, posted once per incident to a Slack-compatible incoming
webhook (`{"text": ..., "blocks": [...]}`) with a link to the run or asset.

The decisions are pure functions over plain data (`incidents`, `error_rate_incidents`);
delivery (de-duplication, retries, the queue) is webhook.py beside this module; the Dagster shell
is the `lifecycle_alerts` sensor."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "critical")
_ICONS = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
HEADER_LIMIT = 150  # Slack: a header block's plain_text
SECTION_LIMIT = 3000  # Slack: a section block's text


@dataclass(frozen=True)
class Alert:
    kind: str  # monitor_breached | drift_detected | retraining_launched | gate_failed | ...
    model: str
    incident: str  # one key per incident: the outbox sends each key once
    title: str
    text: str
    link: str | None = None
    severity: str = "warning"

    def payload(self) -> dict[str, Any]:
        """Slack's incoming-webhook message: `text` is the notification's fallback, the blocks
        are a header, the details (mrkdwn) and a context line with the incident key."""
        icon = _ICONS.get(self.severity, "")
        details = _escape(self.text)
        if self.link:
            details += f"\n<{_escape(self.link)}|Open>"
        context = f"{self.severity} · {self.kind} · model `{_escape(self.model)}` · {self.incident}"
        return {
            "text": f"{icon} {self.title}" + (f" {self.link}" if self.link else ""),
            "blocks": [
                {
                    "type": "header",
                    "text": {"type": "plain_text", "text": _clip(self.title, HEADER_LIMIT)},
                },
                {"type": "section", "text": {"type": "mrkdwn", "text": _clip(details, 2900)}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(context, 300)}]},
            ],
        }

    def line(self) -> str:
        """One log line: what is logged when no webhook is configured."""
        return f"[{self.severity}] {self.title}: {self.text}" + (
            f" ({self.link})" if self.link else ""
        )


def _escape(text: str) -> str:
    # Slack reads &, < and > as markup (<!channel> pings a channel): data is escaped.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_link(ui_url: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/runs/{run_id}"


def asset_link(ui_url: str, path: Iterable[str]) -> str:
    return f"{ui_url.rstrip('/')}/assets/{'/'.join(path)}"


# --- what happened, as plain data -----------------------------------------------------------


@dataclass(frozen=True)
class CheckEvaluation:
    """One finished asset check evaluation (from the instance's event log)."""

    id: int  # the execution record's id: increasing per check
    asset: tuple[str, ...]
    check: str
    passed: bool
    run_id: str
    summary: str = ""  # a few metadata entries, as text


@dataclass(frozen=True)
class RunSeen:
    """A run of a watched job as it is now."""

    run_id: str
    job: str
    status: str  # Dagster's run status name: QUEUED, STARTED, SUCCESS, FAILURE, ...
    trigger: str = ""  # what launched it (the run's trigger tag)
    reason: str = ""


@dataclass(frozen=True)
class RolloutSeen:
    """A promotion or rollback as the decision log recorded it, whoever made it: the control API,
    the CLI, or a Dagster run (actor `dagster:<run id>`: the canary sensor's, or a user's)."""

    id: int  # the decision log's id: increasing
    model: str  # the model config's name
    version: str
    outcome: str  # promoted | rolled_back
    actor: str
    reason: str = ""


@dataclass(frozen=True)
class Watched:
    """What the alert sensor watches, from the model configs: the monitor checks (asset path and
    check name -> (model, monitor)), the gate checks, the retraining jobs; the deployment asset's
    path per model (where a rollout made outside Dagster links to)."""

    monitor_checks: Mapping[tuple[tuple[str, ...], str], tuple[str, str]]
    gate_checks: Mapping[tuple[tuple[str, ...], str], str]
    retrain_jobs: Mapping[str, str]  # job -> model
    deployments: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # model -> path


@dataclass
class Incidents:
    """Open monitor incidents: check key -> the incident key (the first failed evaluation)."""

    open: dict[str, str] = field(default_factory=dict)


def incidents(
    checks: Iterable[CheckEvaluation],
    runs: Iterable[RunSeen],
    watched: Watched,
    state: Incidents,
    ui_url: str,
    rollouts: Iterable[RolloutSeen] = (),
) -> list[Alert]:
    """The alerts for what happened: a monitor check that starts failing opens an incident (one
    alert; it closes when the check passes again), every failed gate evaluation, every retraining
    run, every promotion or rollback in the decision log. `state` is updated in place."""
    alerts = []
    for evaluation in sorted(checks, key=lambda e: e.id):
        alert = _check_alert(evaluation, watched, state, ui_url)
        if alert is not None:
            alerts.append(alert)
    for run in runs:
        alert = _run_alert(run, watched, ui_url)
        if alert is not None:
            alerts.append(alert)
    alerts += [_rollout_alert(r, watched, ui_url) for r in sorted(rollouts, key=lambda r: r.id)]
    return alerts


def _check_alert(
    evaluation: CheckEvaluation, watched: Watched, state: Incidents, ui_url: str
) -> Alert | None:
    where = (evaluation.asset, evaluation.check)
    detail = f"Run: {run_link(ui_url, evaluation.run_id)}" + (
        f" ({evaluation.summary})" if evaluation.summary else ""
    )
    if where in watched.gate_checks:
        if evaluation.passed:
            return None
        model = watched.gate_checks[where]
        return Alert(
            "gate_failed",
            model,
            f"gate:{model}:{evaluation.run_id}",
            f"{model}: the candidate failed the promotion gate",
            f"Check {evaluation.check} failed; the champion keeps serving. {detail}",
            asset_link(ui_url, evaluation.asset),
            "warning",
        )
    if where not in watched.monitor_checks:
        return None
    model, monitor = watched.monitor_checks[where]
    key = f"{'/'.join(evaluation.asset)}:{evaluation.check}"
    if evaluation.passed:
        state.open.pop(key, None)
        return None
    if key in state.open:
        return None  # the same incident, still going on
    incident = state.open[key] = f"monitor:{key}:{evaluation.id}"
    drift = "drift" in monitor
    return Alert(
        "drift_detected" if drift else "monitor_breached",
        model,
        incident,
        f"{model}: {'drift detected' if drift else 'monitor breached'} ({monitor})",
        f"Check {evaluation.check} failed. {detail}",
        asset_link(ui_url, evaluation.asset),
        "warning",
    )


def _run_alert(run: RunSeen, watched: Watched, ui_url: str) -> Alert | None:
    link = run_link(ui_url, run.run_id)
    why = f" Reason: {run.reason}" if run.reason else ""
    if run.job in watched.retrain_jobs:
        model = watched.retrain_jobs[run.job]
        by = f" (trigger: {run.trigger})" if run.trigger else ""
        return Alert(
            "retraining_launched",
            model,
            f"retrain:{run.run_id}",
            f"{model}: retraining launched{by}",
            f"Run {run.run_id[:8]} of {run.job}: fresh dataset, training, gate, canary.{why}",
            link,
            "info",
        )
    return None


def _rollout_alert(rollout: RolloutSeen, watched: Watched, ui_url: str) -> Alert:
    promoted = rollout.outcome == "promoted"
    run = rollout.actor.removeprefix("dagster:") if rollout.actor.startswith("dagster:") else ""
    where = watched.deployments.get(rollout.model)
    link = run_link(ui_url, run) if run else (asset_link(ui_url, where) if where else None)
    change = "now serves all traffic" if promoted else "no longer serves"
    why = f" Reason: {rollout.reason}" if rollout.reason else ""
    return Alert(
        "canary_promoted" if promoted else "canary_rolled_back",
        rollout.model,
        f"rollout:{rollout.model}:{rollout.id}",
        f"{rollout.model}: canary {'promoted' if promoted else 'rolled back'}",
        f"v{rollout.version} {change} (by {rollout.actor}).{why}",
        link,
        "info" if promoted else "warning",
    )


# --- the serving error rate ------------------------------------------------------------------


def scrape(url: str, timeout: float) -> str | None:
    """The text of a Prometheus endpoint; None when it does not answer (never raises)."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode()
    except (OSError, ValueError):
        return None


def serving_counters(metrics_text: str) -> dict[str, dict[str, float]]:
    """Per model label, the model server's rejected-or-failed requests (`errors`) and answered
    predict requests (`answered`, the latency histogram's count), from its /metrics text."""
    from prometheus_client.parser import text_string_to_metric_families

    counters: dict[str, dict[str, float]] = {}
    wanted = {
        "mlops_prediction_errors_total": "errors",
        "mlops_predict_latency_seconds_count": "answered",
    }
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            name = wanted.get(sample.name)
            if name is not None:
                model = counters.setdefault(sample.labels.get("model", "*"), {})
                model[name] = model.get(name, 0.0) + sample.value
    return {
        m: {"errors": c.get("errors", 0.0), "answered": c.get("answered", 0.0)}
        for m, c in counters.items()
    }


@dataclass(frozen=True)
class ErrorRateLimit:
    max_rate: float  # share of requests rejected or failed
    min_requests: int  # requests an interval needs before its rate counts
    max_window_seconds: float  # an interval this old with too few requests starts over


def error_rate_incidents(
    baselines: Mapping[str, Mapping[str, float]],
    current: Mapping[str, Mapping[str, float]],
    now: float,
    limit: ErrorRateLimit,
    open_incidents: dict[str, str],
    link_for: Callable[[str], str | None] = lambda model: None,
    scraped_since: float | None = None,
) -> tuple[list[Alert], dict[str, dict[str, float]]]:
    """Per model label, compare the server's counters with the baseline taken when the interval
    started (`{"at": seconds, "errors": n, "answered": n}`): once the interval holds
    `min_requests` requests, a rate over the limit opens an incident (one alert; it closes when an
    interval is back under the limit) and a new interval starts. A model with no baseline counts
    from zero since `scraped_since` (the server was watched then and had no such series: they
    appear with the first request), else starts its interval now (the server is new to us); a
    counter below its baseline (the server restarted) counts from zero.
    Returns the alerts and the new baselines; `open_incidents` (model -> key) is updated."""
    alerts, renewed = [], {}
    for model, counts in sorted(current.items()):
        fresh = {"at": now, "errors": counts["errors"], "answered": counts["answered"]}
        start = baselines.get(model)
        if start is None and scraped_since is not None:
            start = {"at": scraped_since, "errors": 0.0, "answered": 0.0}
        if start is None:
            renewed[model] = fresh
            continue
        errors = _delta(counts["errors"], start["errors"])
        requests = errors + _delta(counts["answered"], start["answered"])
        seconds = now - start["at"]
        enough = requests >= limit.min_requests
        renewed[model] = fresh if enough or seconds >= limit.max_window_seconds else dict(start)
        if not enough:
            continue
        rate = errors / requests
        if rate <= limit.max_rate:
            open_incidents.pop(model, None)
        elif model not in open_incidents:
            key = open_incidents[model] = f"error_rate:{model}:{int(now)}"
            numbers = (rate, errors, requests, seconds)
            alerts.append(_error_rate_alert(model, key, numbers, limit, link_for(model)))
    return alerts, renewed


def _delta(now: float, before: float) -> float:
    return now - before if now >= before else now


def _error_rate_alert(
    model: str,
    key: str,
    numbers: tuple[float, float, float, float],
    limit: ErrorRateLimit,
    link: str | None,
) -> Alert:
    rate, errors, requests, seconds = numbers
    return Alert(
        "serving_error_rate",
        model,
        key,
        f"{model}: serving error rate {rate:.1%} over the {limit.max_rate:.0%} limit",
        f"{int(errors)} of {int(requests)} requests to {model} were rejected or failed in the last "
        f"{seconds:.0f} s (mlops_prediction_errors_total by reason on /metrics).",
        link,
        "critical",
    )
