import datetime as dt
from typing import TYPE_CHECKING

import dagster as dg

from mlops_assets.settings import get_settings

if TYPE_CHECKING:
    from mlops_assets.datagen.landing import LandingValidation
    from mlops_assets.world import World


class LandingZoneResource(dg.ConfigurableResource):
    """Where the shop's daily deliveries land (a folder locally, an s3:// prefix in prod) and the
    data folder whose persisted world (seed, scale, drift) the synthetic source generates. Unset
    fields follow the settings of the process that runs the step."""

    root: str | None = None
    data_dir: str | None = None

    def landing_root(self) -> str:
        return self.root or get_settings().landing

    def world(self) -> "World":
        from mlops_assets.world import ensure_world

        return ensure_world(self.data_dir or get_settings().data_dir)

    def land(self, days: list[dt.date]) -> list[dict[str, tuple[str, int]]]:
        """Land each day (in order; their writes overlap); nothing is written if a day is
        outside the world."""
        from mlops_assets.datagen.landing import land_many

        world = self.world()
        outside = [day for day in days if not world.contains(day)]
        if outside:
            raise ValueError(
                f"{outside[0]} is outside the simulated world "
                f"({world.start_date} .. {world.last_day})"
            )
        return land_many(world, self.landing_root(), days)

    def validate(self, table: str, days: list[dt.date]) -> "LandingValidation":
        from mlops_assets.datagen.landing import validate_landing

        return validate_landing(self.landing_root(), table, days)
