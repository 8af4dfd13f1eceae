import datetime as dt
from typing import TYPE_CHECKING

import dagster as dg

from mlops_assets.settings import get_settings

if TYPE_CHECKING:
    from mlops_assets.datagen.landing import LandingValidation
    from mlops_assets.datagen.simulate import WorldConfig


class LandingZoneResource(dg.ConfigurableResource):
    """Where the shop's daily deliveries land (a folder locally, an s3:// prefix in prod) and the
    synthetic source that produces them."""

    root: str
    seed: int = 42
    n_customers: int = 20_000
    start_date: str = "2025-01-01"
    horizon_days: int = 365
    covariate_drift_from: str | None = None
    concept_drift_from: str | None = None

    @classmethod
    def from_settings(cls) -> "LandingZoneResource":
        s = get_settings()
        return cls(
            root=s.landing,
            seed=s.seed,
            n_customers=s.n_customers,
            start_date=s.start_date.isoformat(),
            horizon_days=s.horizon_days,
            covariate_drift_from=_iso(s.covariate_drift_from),
            concept_drift_from=_iso(s.concept_drift_from),
        )

    def world(self) -> "WorldConfig":
        from mlops_assets.datagen.simulate import WorldConfig

        return WorldConfig(
            seed=self.seed,
            n_customers=self.n_customers,
            start_date=dt.date.fromisoformat(self.start_date),
            horizon_days=self.horizon_days,
            covariate_drift_from=_date(self.covariate_drift_from),
            concept_drift_from=_date(self.concept_drift_from),
        )

    def land(self, day: dt.date) -> dict[str, tuple[str, int]]:
        from mlops_assets.datagen.landing import land_day

        return land_day(self.world(), self.root, day)

    def validate(self, table: str, days: list[dt.date]) -> "LandingValidation":
        from mlops_assets.datagen.landing import validate_landing

        return validate_landing(self.root, table, days)


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None
