"""The resources every asset, check, job and sensor asks for by name: the engines of this
environment (`mlops_assets.resources.resources_for`), the landing zone and dbt."""

import dagster as dg

from mlops_assets.defs.dbt.project import dbt_resource
from mlops_assets.defs.landing.resources import LandingZoneResource
from mlops_assets.resources import resources_for
from mlops_assets.settings import get_environment


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            **resources_for(get_environment()),
            "landing_zone": LandingZoneResource(),
            "dbt": dbt_resource(),
        }
    )
