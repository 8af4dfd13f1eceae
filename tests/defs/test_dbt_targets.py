"""`dbt parse` passes for every target: the embedded DuckDB ones and prod on Trino + Iceberg."""

import os
import subprocess

import pytest

from mlops_assets.defs.dbt.project import DBT_EXECUTABLE, DBT_PROJECT_DIR
from mlops_assets.model_config import dbt_vars


@pytest.mark.parametrize("target", ["local", "ci", "prod"])
def test_dbt_parse(target, tmp_path):
    env = {
        **os.environ,
        "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
        "DBT_TARGET_PATH": str(tmp_path / "target"),
        "DBT_LOG_PATH": str(tmp_path / "logs"),
        "MLOPS_ENV": target,
    }
    proc = subprocess.run(
        [DBT_EXECUTABLE, "parse", "--target", target, "--no-partial-parse", "--vars", dbt_vars()],
        cwd=DBT_PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = (tmp_path / "target" / "manifest.json").read_text()
    if target == "prod":
        # Gold lands as Iceberg tables in Trino, landing is read from the Hive catalog.
        assert '"materialized": "table"' in manifest
        assert '"hive"' in manifest
    else:
        assert '"materialized": "external"' in manifest


def test_the_dbt_resource_knows_its_version_without_starting_dbt():
    """The version dagster-dbt would read from `dbt --version` (it decides the CLI's flags), here
    from the installed dbt-core beside this interpreter, without the 2 s process."""
    import re

    from mlops_assets.defs.dbt.project import dbt_resource

    out = subprocess.run([DBT_EXECUTABLE, "--version"], capture_output=True, text=True, check=True)
    reported = re.search(r"(\d+\.\d+\.\d+)", out.stdout).group(1)
    assert str(dbt_resource()._cli_version) == reported
