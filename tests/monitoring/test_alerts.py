"""Alerts as a library: which events are incidents (pure functions over plain data), the
Slack-compatible payload, and delivery to a real local webhook (de-duplication, retries with
backoff, a bounded queue, a dead webhook that costs a bounded time and never raises)."""

import time

import pytest

from mlops_assets.monitoring.alerts import (
    Alert,
    CheckEvaluation,
    ErrorRateLimit,
    Incidents,
    RolloutSeen,
    RunSeen,
    Watched,
    error_rate_incidents,
    incidents,
    serving_counters,
)
from mlops_assets.monitoring.webhook import MAX_PENDING, MAX_SENT, Outbox, post_json, webhook_sender
from tests.monitoring.webhook_receiver import refused_url, webhook_receiver

UI = "http://dagster.example:3000"
DRIFT = (("monitoring", "churn", "feature_drift"), "feature_drift_within_thresholds")
ONLINE = (("monitoring", "churn", "online_drift"), "online_drift_within_thresholds")
GATE = (("models", "churn", "promotion"), "candidate_cleared_the_gate")
WATCHED = Watched(
    monitor_checks={DRIFT: ("churn", "feature_drift"), ONLINE: ("churn", "online_drift")},
    gate_checks={GATE: "churn"},
    retrain_jobs={"retrain_churn": "churn"},
    deployments={"churn": ("serving", "churn", "deployment")},
)


def _check(id: int, where, passed: bool, run: str = "run-0001") -> CheckEvaluation:
    return CheckEvaluation(id, where[0], where[1], passed, run, "psi: 0.4")


def _alert(incident: str = "k1", title: str = "churn: drift detected") -> Alert:
    return Alert("drift_detected", "churn", incident, title, "Check failed.", f"{UI}/runs/r1")


# --- which events are incidents --------------------------------------------------------------


def test_a_failing_monitor_opens_one_incident_until_it_passes_again():
    state = Incidents()
    first = incidents([_check(1, DRIFT, False)], [], WATCHED, state, UI)
    assert [(a.kind, a.model, a.severity) for a in first] == [
        ("drift_detected", "churn", "warning")
    ]
    assert first[0].link == f"{UI}/assets/monitoring/churn/feature_drift"
    assert f"{UI}/runs/run-0001" in first[0].text and "psi: 0.4" in first[0].text
    # Still failing: the same incident, no new alert. Passing closes it; failing again opens a
    # new one with a new key.
    assert incidents([_check(2, DRIFT, False)], [], WATCHED, state, UI) == []
    assert incidents([_check(3, DRIFT, True)], [], WATCHED, state, UI) == []
    again = incidents([_check(4, DRIFT, False)], [], WATCHED, state, UI)
    assert len(again) == 1 and again[0].incident != first[0].incident


def test_online_drift_gate_runs_and_unwatched_events():
    state = Incidents()
    checks = [
        _check(5, ONLINE, False),
        _check(6, GATE, False, "run-gate"),
        _check(7, GATE, True, "run-gate-2"),  # a gate that passed is no incident
        _check(8, (("monitoring", "churn", "other"), "other_check"), False),  # not watched
    ]
    runs = [
        RunSeen("run-retrain", "retrain_churn", "QUEUED", "online_drift", "PSI 0.4 on 3 windows"),
        # A promote job's run is no alert: its promotion is, from the decision log (below).
        RunSeen("run-promote", "promote_churn", "SUCCESS"),
        RunSeen("run-other", "daily_scoring_job", "SUCCESS"),
    ]
    rollouts = [  # the decision log: one promotion through the API, one rollback by a run
        RolloutSeen(12, "churn", "7", "rolled_back", "dagster:run-rollback", "AUC regressed"),
        RolloutSeen(9, "churn", "7", "promoted", "alice", "looks good"),
    ]
    alerts = incidents(checks, runs, WATCHED, state, UI, rollouts)
    assert [a.kind for a in alerts][-2:] == ["canary_promoted", "canary_rolled_back"]  # in order
    by_kind = {a.kind: a for a in alerts}
    assert sorted(by_kind) == [
        "canary_promoted",
        "canary_rolled_back",
        "drift_detected",
        "gate_failed",
        "retraining_launched",
    ]
    assert by_kind["gate_failed"].incident == "gate:churn:run-gate"
    assert by_kind["gate_failed"].link == f"{UI}/assets/models/churn/promotion"
    launched = by_kind["retraining_launched"]
    assert launched.link == f"{UI}/runs/run-retrain"
    assert "online_drift" in launched.title and "PSI 0.4" in launched.text
    rolled_back, promoted = by_kind["canary_rolled_back"], by_kind["canary_promoted"]
    assert rolled_back.link == f"{UI}/runs/run-rollback"
    assert rolled_back.severity == "warning" and "AUC regressed" in rolled_back.text
    assert promoted.link == f"{UI}/assets/serving/churn/deployment"  # no run: the deployment
    assert promoted.incident == "rollout:churn:9" and "by alice" in promoted.text
    assert promoted.severity == "info" and "v7 now serves all traffic" in promoted.text


def test_error_rate_needs_enough_requests_and_alerts_once_per_incident():
    limit = ErrorRateLimit(max_rate=0.05, min_requests=20, max_window_seconds=300)
    open_incidents: dict[str, str] = {}

    def tick(baselines, errors, answered, now):
        counters = {"churn": {"errors": errors, "answered": answered}}
        return error_rate_incidents(baselines, counters, now, limit, open_incidents)

    alerts, base = tick({}, 100, 1000, 0)  # first sight: the interval starts here
    assert alerts == [] and base["churn"]["errors"] == 100
    alerts, base = tick(base, 105, 1005, 2)  # 5 of 10 failed, but only 10 requests: wait
    assert alerts == [] and base["churn"]["at"] == 0
    alerts, base = tick(base, 112, 1010, 4)  # 12 of 22: over the limit
    assert [a.kind for a in alerts] == ["serving_error_rate"]
    assert "54.5%" in alerts[0].title and alerts[0].severity == "critical"
    alerts, base = tick(base, 140, 1010, 6)  # still failing: the same incident
    assert alerts == [] and "churn" in open_incidents
    alerts, base = tick(base, 141, 1100, 8)  # 1 of 91: closed
    assert alerts == [] and open_incidents == {}
    alerts, base = tick(base, 30, 5, 10)  # restarted server: counters from zero, 30 of 35
    assert len(alerts) == 1


def test_error_rate_counts_series_that_appear_after_the_server_was_seen():
    limit = ErrorRateLimit(0.05, 20, 300)
    counters = {"fraud": {"errors": 25.0, "answered": 0.0}}
    alerts, _ = error_rate_incidents({}, counters, 10, limit, {}, scraped_since=8)
    assert len(alerts) == 1 and "100.0%" in alerts[0].title
    # A stale interval with too few requests starts over instead of mixing hours of traffic.
    base = {"fraud": {"at": 0.0, "errors": 0.0, "answered": 0.0}}
    alerts, renewed = error_rate_incidents(
        base, {"fraud": {"errors": 3, "answered": 2}}, 400, limit, {}
    )
    assert alerts == [] and renewed["fraud"]["at"] == 400


def test_serving_counters_read_the_prometheus_text_format():
    text = (
        "# TYPE mlops_prediction_errors counter\n"
        'mlops_prediction_errors_total{model="churn",reason="invalid_json"} 3.0\n'
        'mlops_prediction_errors_total{model="churn",reason="unknown_customer"} 4.0\n'
        'mlops_prediction_errors_created{model="churn",reason="invalid_json"} 1.7e9\n'
        'mlops_prediction_errors_total{model="*",reason="unknown_route"} 9.0\n'
        "# TYPE mlops_predict_latency_seconds histogram\n"
        'mlops_predict_latency_seconds_bucket{le="+Inf",model="churn",model_version="2"} 10.0\n'
        'mlops_predict_latency_seconds_count{model="churn",model_version="2"} 10.0\n'
        'mlops_predict_latency_seconds_count{model="churn",model_version="3"} 5.0\n'
        'mlops_predict_latency_seconds_sum{model="churn",model_version="3"} 0.01\n'
    )
    assert serving_counters(text) == {
        "churn": {"errors": 7.0, "answered": 15.0},
        "*": {"errors": 9.0, "answered": 0.0},
    }


# --- the payload ------------------------------------------------------------------------------


def test_payload_is_slack_incoming_webhook_json():
    alert = Alert(
        "gate_failed",
        "churn",
        "gate:churn:r1",
        "churn: the candidate failed the promotion gate " + "x" * 200,
        "AUC 0.61 < 0.7 & <!channel> stays text",
        f"{UI}/assets/models/churn/promotion",
        "warning",
    )
    payload = alert.payload()
    assert set(payload) == {"text", "blocks"}
    assert payload["text"].startswith(":warning: churn: the candidate failed")
    header, section, context = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": header["text"]["text"]},
    }
    assert len(header["text"]["text"]) <= 150
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "&amp; &lt;!channel&gt;" in section["text"]["text"]  # no mention reaches Slack
    assert f"<{UI}/assets/models/churn/promotion|Open>" in section["text"]["text"]
    assert context["type"] == "context" and "gate:churn:r1" in context["elements"][0]["text"]


# --- delivery to a real webhook ---------------------------------------------------------------


def test_each_incident_is_posted_once_across_repeated_rounds():
    outbox = Outbox()
    with webhook_receiver() as hook:
        send = webhook_sender(hook.url, timeout=2)
        for _ in range(3):
            outbox.add([_alert("k1"), _alert("k2", "churn: canary promoted"), _alert("k1")])
            report = outbox.deliver(send)
        assert report == {"sent": 0, "dropped": 0, "queued": 0, "error": ""}
        assert hook.titles() == ["churn: drift detected", "churn: canary promoted"]
        assert hook.posts[0] == _alert("k1").payload()
    # The state survives the sensor's cursor (JSON) and still knows what was sent.
    restored = Outbox.from_json(outbox.to_json())
    assert restored.add([_alert("k1")]) == []


def test_failed_posts_are_retried_with_backoff_then_delivered():
    outbox = Outbox()
    with webhook_receiver(fail_first=2, fail_status=503) as hook:
        outbox.add([_alert("k1")])
        started = time.monotonic()
        report = outbox.deliver(webhook_sender(hook.url, 2), attempts=3, backoff=0.1)
        assert time.monotonic() - started >= 0.3  # 0.1 s then 0.2 s between attempts
        assert report["sent"] == 1 and hook.attempts == 3 and len(hook.posts) == 1


def test_an_alert_still_failing_stays_queued_for_the_next_round():
    outbox = Outbox()
    with webhook_receiver(fail_first=4, fail_status=500) as hook:
        outbox.add([_alert("k1"), _alert("k2")])
        first = outbox.deliver(webhook_sender(hook.url, 2), attempts=2, backoff=0.01)
        assert first["sent"] == 0 and first["queued"] == 2 and "HTTP 500" in first["error"]
        assert hook.attempts == 2  # k2 is not tried while the webhook fails
        second = outbox.deliver(webhook_sender(hook.url, 2), attempts=2, backoff=0.01)
        assert second["sent"] == 0 and hook.attempts == 4
        third = outbox.deliver(webhook_sender(hook.url, 2), attempts=2, backoff=0.01)
        assert third["sent"] == 2 and hook.titles() == ["churn: drift detected"] * 2


def test_a_payload_refused_for_good_is_dropped_not_retried_forever():
    outbox = Outbox()
    with webhook_receiver(fail_first=1, fail_status=400) as hook:
        outbox.add([_alert("k1"), _alert("k2")])
        report = outbox.deliver(webhook_sender(hook.url, 2))
        assert report["dropped"] == 1 and report["sent"] == 1 and hook.attempts == 2


@pytest.mark.parametrize("dead", ["refused", "hangs"])
def test_a_dead_webhook_costs_a_bounded_time_and_never_raises(dead):
    outbox = Outbox()
    outbox.add([_alert(f"k{i}") for i in range(10)])
    timeout = 0.5
    if dead == "refused":
        url, hook_context = refused_url(), None
    else:
        hook_context = webhook_receiver(fail_first=100, hang_seconds=5)
        url = hook_context.__enter__().url
    try:
        started = time.monotonic()
        report = outbox.deliver(webhook_sender(url, timeout), attempts=3, backoff=0.1, budget=5)
        elapsed = time.monotonic() - started
    finally:
        if hook_context is not None:
            hook_context.__exit__(None, None, None)
    # One alert's attempts (3 x timeout + backoff), then the round stops: the rest wait.
    assert elapsed < 3 * timeout + 0.3 + 0.5, elapsed
    assert report["sent"] == 0 and report["queued"] == 10 and report["error"]


def test_post_json_reports_instead_of_raising():
    assert post_json(refused_url(), {"text": "x"}, 0.5).status is None
    assert post_json("not a url", {"text": "x"}, 0.5).status is None


def test_the_record_and_the_queue_are_bounded():
    outbox = Outbox()
    for i in range(MAX_SENT + 20):
        outbox.mark_sent(_alert(f"s{i}"))
    assert len(outbox.sent) == MAX_SENT and outbox.sent[-1] == f"s{MAX_SENT + 19}"
    outbox.add([_alert(f"p{i}") for i in range(MAX_PENDING + 5)])
    assert len(outbox.pending) == MAX_PENDING and outbox.pending[0].incident == "p5"
