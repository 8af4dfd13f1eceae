"""Trino's catalogs (deploy/trino/catalog/) point at the REST catalog, warehouse, S3 endpoint and
credentials the project's production resources use, through the very variables the project reads,
so one secret configures both (no Trino runs here: the files are checked against the code)."""

from __future__ import annotations

import re

import dagster as dg

from mlops_assets.pipelines.training_pipeline import SECRET_ENV
from mlops_assets.resources import resources_for
from mlops_assets.settings import PROJECT_ROOT, Environment, Settings

CATALOGS = PROJECT_ROOT / "deploy" / "trino" / "catalog"
ENV_REFERENCE = re.compile(r"\$\{ENV:([A-Z0-9_]+)\}")


def _properties(name: str) -> dict[str, str]:
    lines = (CATALOGS / f"{name}.properties").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def _variable(value: str) -> str:
    match = ENV_REFERENCE.fullmatch(value)
    assert match, f"{value!r} is not an ${{ENV:...}} reference"
    return match.group(1)


def _setting_variable(field: str) -> str:
    """The environment variable a Settings field is read from."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"MLOPS_{field.upper()}"


def test_the_iceberg_catalog_is_the_one_the_production_resources_use():
    props = _properties("iceberg")
    assert props["connector.name"] == "iceberg" and props["iceberg.catalog.type"] == "rest"
    assert _variable(props["iceberg.rest-catalog.uri"]) == _setting_variable("iceberg_rest_uri")
    assert _variable(props["iceberg.rest-catalog.warehouse"]) == _setting_variable(
        "iceberg_warehouse"
    )
    assert _variable(props["s3.endpoint"]) == _setting_variable("s3_endpoint")
    # The catalog's OAuth2 credential is the one the production lakehouse resource reads.
    lakehouse = resources_for(Environment.PROD, Settings(env=Environment.PROD))["lakehouse"]
    credential = vars(lakehouse)["credential"]
    assert isinstance(credential, dg.EnvVar)
    assert props["iceberg.rest-catalog.security"] == "OAUTH2"
    assert _variable(props["iceberg.rest-catalog.oauth2.credential"]) == credential.env_var_name
    # S3 credentials: the pair every pod and pipeline step gets from the project's secret.
    pair = {_variable(props["s3.aws-access-key"]), _variable(props["s3.aws-secret-key"])}
    assert pair == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} and pair <= set(SECRET_ENV)


def test_landing_and_lakehouse_catalogs_share_the_s3_settings():
    iceberg, hive = _properties("iceberg"), _properties("hive")
    shared = {key for key in iceberg if key.startswith(("s3.", "fs."))}
    assert shared and {key: hive.get(key) for key in shared} == {k: iceberg[k] for k in shared}


def test_every_variable_the_catalogs_read_is_in_env_example():
    documented = set(
        re.findall(r"^#?\s*([A-Z0-9_]+)=", (PROJECT_ROOT / ".env.example").read_text(), re.M)
    )
    used = {
        variable
        for path in CATALOGS.glob("*.properties")
        for variable in ENV_REFERENCE.findall(path.read_text())
    }
    assert used and used <= documented, sorted(used - documented)
