import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from mlops_assets.defs.dbt.project import manifest_path
from mlops_assets.defs.dbt.translator import LakehouseDbtTranslator
from mlops_assets.model_config import dbt_vars
from mlops_assets.settings import get_settings


@dbt_assets(
    manifest=manifest_path(),
    dagster_dbt_translator=LakehouseDbtTranslator(),
    name="lakehouse_dbt",
)
def lakehouse_dbt_assets(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """bronze views, silver tables and gold feature/label tables; dbt tests run as asset checks.
    `dbt build` skips every model downstream of a failed test, so bad data does not reach gold."""
    get_settings().export_dbt_env()
    yield from dbt.cli(["build", "--vars", dbt_vars()], context=context).stream()
