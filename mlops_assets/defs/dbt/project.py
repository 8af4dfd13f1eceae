import shutil
import sys
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliResource, DbtProject

from mlops_assets.model_config import dbt_vars
from mlops_assets.settings import PROJECT_ROOT, get_settings

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
# The dbt installed beside this interpreter, so an un-activated venv works too.
DBT_EXECUTABLE = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"


class ProjectDbtCli(DbtCliResource):
    """dagster-dbt's dbt resource. When the dbt is the one beside this interpreter, its version
    comes from dbt-core's package metadata: dagster-dbt would otherwise start `dbt --version` (a
    second Python process, ~2 s) before each dbt command."""

    @cached_property
    def _cli_version(self) -> Any:
        from importlib.metadata import PackageNotFoundError, version

        from packaging.version import Version

        if self.dbt_executable == DBT_EXECUTABLE and DBT_EXECUTABLE != "dbt":
            try:
                return Version(version("dbt-core"))
            except PackageNotFoundError:
                pass
        return DbtCliResource._cli_version.func(self)  # type: ignore[attr-defined]


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
    """Runs `dbt parse` for the current target and returns the manifest path; skipped when the
    manifest was parsed from the same project files with the same environment (a stamp beside it)."""
    import hashlib
    import json

    settings = get_settings()
    settings.export_dbt_env()
    project = lakehouse_project()
    sources = sorted(
        p
        for p in DBT_PROJECT_DIR.rglob("*")
        if p.is_file()
        and p.suffix in {".sql", ".yml", ".yaml", ".csv", ".md"}
        and p.relative_to(DBT_PROJECT_DIR).parts[0] not in {"target", "dbt_packages", "logs"}
    )
    digest = hashlib.sha256(json.dumps(settings.dbt_env(), sort_keys=True).encode())
    digest.update(dbt_vars().encode())
    for path in sources:
        digest.update(str(path.relative_to(DBT_PROJECT_DIR)).encode())
        digest.update(path.read_bytes())
    stamp = project.manifest_path.with_name("manifest.stamp")
    if (
        project.manifest_path.exists()
        and stamp.exists()
        and stamp.read_text() == digest.hexdigest()
    ):
        return project.manifest_path
    dbt = ProjectDbtCli(project_dir=project, target=project.target, dbt_executable=DBT_EXECUTABLE)
    dbt.cli(["parse", "--quiet", "--vars", dbt_vars()], target_path=project.target_path).wait()
    stamp.write_text(digest.hexdigest())
    return project.manifest_path


def manifest_path() -> Path:
    project = lakehouse_project()
    if not project.manifest_path.exists():
        # A fresh checkout that skipped `mlops prepare`: parse once rather than fail to load.
        prepare_manifest()
    return project.manifest_path


def dbt_resource() -> DbtCliResource:
    """dbt for the environment's target, with the dbt beside this interpreter."""
    return ProjectDbtCli(
        project_dir=lakehouse_project(),
        target=get_settings().dbt_target,
        dbt_executable=DBT_EXECUTABLE,
    )
