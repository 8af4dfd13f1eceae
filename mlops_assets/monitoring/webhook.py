"""Delivering alerts: a Slack-compatible incoming webhook (`post_json`, which never raises) and the
`Outbox`, which remembers the incidents already sent (bounded), queues what could not be delivered
(bounded) for the next attempt, and retries with backoff inside a time budget so a dead webhook
never stalls its caller. Plain JSON state: the alert sensor keeps it in its cursor."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mlops_assets.monitoring.alerts import Alert

MAX_SENT = 500  # incident keys remembered (older ones may be sent again, never within a tick)
MAX_PENDING = 50  # undelivered alerts kept for the next attempt (the oldest are dropped)


@dataclass(frozen=True)
class Delivery:
    status: int | None  # the HTTP status; None when no answer came (refused, timeout)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """No answer, throttled or a server error: worth another attempt. Any other 4xx (a bad
        payload, a revoked webhook) will not get better."""
        return self.status is None or self.status == 429 or self.status >= 500


def post_json(url: str, payload: Mapping[str, Any], timeout: float) -> Delivery:
    """POST `payload` as JSON; never raises."""
    body = json.dumps(payload).encode()
    try:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return Delivery(response.status)
    except urllib.error.HTTPError as err:
        return Delivery(err.code, f"HTTP {err.code}")
    except (OSError, ValueError) as err:  # refused, reset, timeout, DNS, a malformed URL
        return Delivery(None, f"{type(err).__name__}: {err}")


@dataclass
class Outbox:
    """Incident keys already sent (the newest MAX_SENT) and alerts waiting for delivery (the
    newest MAX_PENDING), kept between sensor ticks as JSON (`to_json` / `from_json`)."""

    sent: list[str] = field(default_factory=list)
    pending: list[Alert] = field(default_factory=list)

    def add(self, alerts: Iterable[Alert]) -> list[Alert]:
        """Queue the alerts whose incident was neither sent nor queued; returns those."""
        known = set(self.sent) | {a.incident for a in self.pending}
        new = []
        for alert in alerts:
            if alert.incident not in known:
                known.add(alert.incident)
                new.append(alert)
        self.pending = (self.pending + new)[-MAX_PENDING:]
        return new

    def mark_sent(self, alert: Alert) -> None:
        self.pending = [a for a in self.pending if a.incident != alert.incident]
        self.sent = [*self.sent, alert.incident][-MAX_SENT:]

    def deliver(
        self,
        send: Callable[[Alert], Delivery],
        attempts: int = 3,
        backoff: float = 0.25,
        budget: float = 10.0,
    ) -> dict[str, Any]:
        """Send the queued alerts in order, each up to `attempts` times with exponential backoff.
        An alert refused for good is dropped (and reported); one that still fails stays queued,
        and so does everything after it (the webhook is down: no use trying more this time). No
        attempt starts after `budget` seconds. Returns counts and the last error."""
        deadline = time.monotonic() + budget
        report: dict[str, Any] = {"sent": 0, "dropped": 0, "queued": 0, "error": ""}
        for alert in list(self.pending):
            result = _attempt(send, alert, attempts, backoff, deadline)
            if result is None:
                break  # out of time
            if result.ok:
                self.mark_sent(alert)
                report["sent"] += 1
                continue
            report["error"] = result.error or f"HTTP {result.status}"
            if result.retryable:
                break
            self.mark_sent(alert)  # never deliverable: not retried forever
            report["dropped"] += 1
        report["queued"] = len(self.pending)
        return report

    def to_json(self) -> dict[str, Any]:
        return {"sent": self.sent, "pending": [asdict(a) for a in self.pending]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Outbox:
        data = data or {}
        return cls(list(data.get("sent", [])), [Alert(**a) for a in data.get("pending", [])])


def _attempt(
    send: Callable[[Alert], Delivery], alert: Alert, attempts: int, backoff: float, deadline: float
) -> Delivery | None:
    result = None
    for attempt in range(attempts):
        if time.monotonic() >= deadline:
            return result
        result = send(alert)
        if result.ok or not result.retryable:
            return result
        if attempt + 1 < attempts:
            time.sleep(min(backoff * 2**attempt, max(0.0, deadline - time.monotonic())))
    return result


def webhook_sender(url: str, timeout: float) -> Callable[[Alert], Delivery]:
    return lambda alert: post_json(url, alert.payload(), timeout)
