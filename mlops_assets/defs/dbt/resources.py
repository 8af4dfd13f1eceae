from dagster_dbt import DbtCliResource

from mlops_assets.defs.dbt.project import DBT_EXECUTABLE, lakehouse_project
from mlops_assets.settings import get_settings


def dbt_resource() -> DbtCliResource:
    settings = get_settings()
    return DbtCliResource(
        project_dir=lakehouse_project(), target=settings.dbt_target, dbt_executable=DBT_EXECUTABLE
    )
