"""The warehouse: the dbt medallion (bronze, silver, gold) as Dagster assets."""

import dagster as dg

from mlops_assets.defs.dbt.assets import lakehouse_dbt_assets
from mlops_assets.defs.dbt.resources import dbt_resource

defs = dg.Definitions(assets=[lakehouse_dbt_assets], resources={"dbt": dbt_resource()})
