"""The demo's calendar, derived from the world: which days are scored, monitored and replayed
through the canary, and the label cutoff of the first model."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from mlops_assets.world import World

DAY = dt.timedelta(days=1)
# Days of performance monitoring at the end of the labelled history (enough for the sensor's
# consecutive-day rule to see a degradation, and for a clean world to show it sees none).
MONITOR_DAYS = 18
CANARY_DAYS = 14
# The first model needs a few months of labelled snapshots before its cutoff.
MIN_TRAINING_DAYS = 90


class PlanError(ValueError):
    """A world the demo's story does not fit (the message says what to change)."""


@dataclass(frozen=True)
class Plan:
    world: World
    label_window_days: int

    @property
    def first_day(self) -> dt.date:
        return self.world.start_date

    @property
    def last_day(self) -> dt.date:
        return self.world.last_day

    @property
    def labels_end(self) -> dt.date:
        """The last prediction day whose actuals are known by the end of the history."""
        return self.last_day - self.label_window_days * DAY

    @property
    def monitor_days(self) -> tuple[dt.date, dt.date]:
        """The last weeks whose performance is measurable (actuals due) and drift is visible."""
        return self.labels_end - (MONITOR_DAYS - 1) * DAY, self.labels_end

    @property
    def score_days(self) -> tuple[dt.date, dt.date]:
        """Monitoring day D evaluates the predictions of D - (window + 1): score from there."""
        return self.monitor_days[0] - (self.label_window_days + 1) * DAY, self.labels_end

    @property
    def canary_days(self) -> tuple[dt.date, dt.date]:
        return self.labels_end - (CANARY_DAYS - 1) * DAY, self.labels_end

    @property
    def first_model_labels_by(self) -> dt.date:
        """The first model learns what was known before the drift; without drift, every label
        of an as-of time before scoring starts (known one window after it): none of the scored
        days' labels, and enough history for a model with a long window."""
        return self.world.drift_from or self.score_days[0] + self.label_window_days * DAY

    def check(self) -> Plan:
        earliest = self.first_day + MIN_TRAINING_DAYS * DAY
        if self.score_days[0] < earliest:
            needed = (self.last_day - self.score_days[0]).days + MIN_TRAINING_DAYS + 1
            raise PlanError(
                f"a {self.world.days}-day world is too short for the demo: give it at least "
                f"{needed} days (--days)"
            )
        drift = self.world.drift_from
        if drift is not None and not earliest <= drift <= self.monitor_days[1] - 3 * DAY:
            low = (earliest - self.first_day).days
            high = (self.monitor_days[1] - 3 * DAY - self.first_day).days
            raise PlanError(
                f"drift from {drift} (day {(drift - self.first_day).days}) does not fit the demo's "
                f"calendar: pick a drift day between {low} and {high} (--drift-day), or --no-drift"
            )
        return self
