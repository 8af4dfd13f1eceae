"""The simulated world: seed, scale, calendar and drift scenario of the synthetic shop.

It is configuration, persisted once per data folder (`<data dir>/world.json`), and everything that
generates or reads the shop's days (`mlops demo`, `dagster dev` and its daemon, schedules, sensors,
tests, benchmarks) reads it from there, so re-landing any day from the UI gives the same bytes as
the run that landed it first. `mlops world` shows it; `mlops demo --customers/--days/--drift-day/
--no-drift` replaces it (and the data generated from the old one).

Light on purpose (pydantic only): the code location reads it at load time for its partitions.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

WORLD_FILE = "world.json"
DEFAULT_START = dt.date(2025, 1, 1)
# The default story: 240 days, a new channel and a pricing change from day 165.
DEFAULT_DAYS = 240
DEFAULT_DRIFT_DAY = 165


class World(BaseModel):
    """Everything that determines the generated data. Same world, same bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 42
    n_customers: int = Field(default=20_000, ge=10)
    start_date: dt.date = DEFAULT_START
    # The world's calendar: landing days start_date .. last_day.
    days: int = Field(default=DEFAULT_DAYS, ge=1)
    # Days over which new customers sign up (a backlog signed up before start_date).
    horizon_days: int = Field(default=365, ge=1)
    # Drift scenario: from these days a new acquisition channel brings different customers
    # (covariate) and discounts start to drive churn (concept). None: no drift.
    covariate_drift_from: dt.date | None = DEFAULT_START + dt.timedelta(days=DEFAULT_DRIFT_DAY)
    concept_drift_from: dt.date | None = DEFAULT_START + dt.timedelta(days=DEFAULT_DRIFT_DAY)
    # Fraud drift: from this day fraud takes a new shape (another payment method and device, the
    # account's own country), so a fraud model trained before it ranks worse after. None: none;
    # the churn drift above is unaffected by it (and so is the churn data).
    fraud_drift_from: dt.date | None = None

    @model_validator(mode="after")
    def _drift_inside_calendar(self) -> World:
        for name in ("covariate_drift_from", "concept_drift_from", "fraud_drift_from"):
            day = getattr(self, name)
            if day is not None and day < self.start_date:
                raise ValueError(f"{name} {day} is before the world's first day {self.start_date}")
        return self

    @property
    def last_day(self) -> dt.date:
        return self.start_date + dt.timedelta(days=self.days - 1)

    @property
    def end_date(self) -> dt.date:
        """The day after the last one (exclusive end, as partition definitions take it)."""
        return self.start_date + dt.timedelta(days=self.days)

    @property
    def drift_from(self) -> dt.date | None:
        """The first day any drift is on (the customers' or the fraud pattern's)."""
        switches = (self.covariate_drift_from, self.concept_drift_from, self.fraud_drift_from)
        days = [d for d in switches if d is not None]
        return min(days) if days else None

    def drifts(self) -> str:
        """What drifts in this world, in words (the demo's timeline)."""
        parts = []
        if self.covariate_drift_from or self.concept_drift_from:
            parts.append("covariate (tiktok signups) and concept drift")
        if self.fraud_drift_from:
            parts.append(f"a new fraud pattern from {self.fraud_drift_from}")
        return "; ".join(parts) or "a world without drift"

    def day_index(self, day: dt.date) -> int:
        return (day - self.start_date).days

    def drift_index(self, day: dt.date | None) -> float:
        return math.inf if day is None else float(self.day_index(day))

    def contains(self, day: dt.date) -> bool:
        return self.start_date <= day <= self.last_day

    def with_options(
        self,
        *,
        n_customers: int | None = None,
        days: int | None = None,
        drift_day: int | None = None,
        no_drift: bool = False,
        fraud_drift_day: int | None = None,
    ) -> World:
        """This world with the demo's options applied (None keeps a value). `no_drift` turns every
        drift off; `fraud_drift_day` then turns the fraud pattern's on alone."""
        update: dict = {}
        if n_customers is not None:
            update["n_customers"] = n_customers
        if days is not None:
            update["days"] = days
        if no_drift:
            update["covariate_drift_from"] = update["concept_drift_from"] = None
            update["fraud_drift_from"] = None
        elif drift_day is not None:
            when = self.start_date + dt.timedelta(days=drift_day)
            update["covariate_drift_from"] = update["concept_drift_from"] = when
        if fraud_drift_day is not None:
            update["fraud_drift_from"] = self.start_date + dt.timedelta(days=fraud_drift_day)
        return World.model_validate({**self.model_dump(), **update})

    def describe(self) -> str:
        customers = self.covariate_drift_from or self.concept_drift_from
        drift = f"drift from {customers}" if customers else "no drift"
        if self.fraud_drift_from:
            drift += f", fraud drift from {self.fraud_drift_from}"
        return (
            f"{self.n_customers:,} customers, {self.start_date} .. {self.last_day} "
            f"({self.days} days), seed {self.seed}, {drift}"
        )


def world_path(data_dir: Path) -> Path:
    return Path(data_dir) / WORLD_FILE


def load_world(data_dir: Path) -> World:
    """The data folder's world; the default one if nothing was generated there yet."""
    path = world_path(data_dir)
    if not path.exists():
        return World()
    try:
        return World.model_validate_json(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not a valid world definition: {err}") from None


def save_world(data_dir: Path, world: World) -> Path:
    """Persist `world` for the data folder (atomically: readers see the old file or the new)."""
    path = world_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(world.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".world.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path


def ensure_world(data_dir: Path) -> World:
    """The data folder's world, persisted if it was not yet (before the first day lands)."""
    world = load_world(data_dir)
    if not world_path(data_dir).exists():
        save_world(data_dir, world)
    return world
