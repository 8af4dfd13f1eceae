"""The landing zone: raw daily deliveries from the shop."""

import dagster as dg

from mlops_assets.defs.landing.assets import landing_tables
from mlops_assets.defs.landing.checks import landing_quality_checks
from mlops_assets.defs.landing.resources import LandingZoneResource

defs = dg.Definitions(
    assets=[landing_tables],
    asset_checks=[landing_quality_checks],
    resources={"landing_zone": LandingZoneResource()},
)
