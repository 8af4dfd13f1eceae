import shutil
import sys
from functools import cache
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from mlops_assets.settings import PROJECT_ROOT, get_settings

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
# The dbt installed beside this interpreter, so an un-activated venv works too.
DBT_EXECUTABLE = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"


@cache
def lakehouse_project() -> DbtProject:
    """The dbt project for the current environment. Its manifest is prepared by `mlops prepare`
    (or `make prepare`); each target keeps its own, since sources render differently per target."""
    target = get_settings().dbt_target
    return DbtProject(
        project_dir=DBT_PROJECT_DIR,
        profiles_dir=DBT_PROJECT_DIR,
        target=target,
        target_path=Path("target") / target,
    )


def prepare_manifest() -> Path:
    """Runs `dbt parse` for the current target and returns the manifest path."""
    get_settings().export_dbt_env()
    project = lakehouse_project()
    dbt = DbtCliResource(project_dir=project, target=project.target, dbt_executable=DBT_EXECUTABLE)
    dbt.cli(["parse", "--quiet"], target_path=project.target_path).wait()
    return project.manifest_path


def manifest_path() -> Path:
    project = lakehouse_project()
    if not project.manifest_path.exists():
        # A fresh checkout that skipped `mlops prepare`: parse once rather than fail to load.
        prepare_manifest()
    return project.manifest_path
