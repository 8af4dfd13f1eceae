from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings


class LakehouseDbtTranslator(DagsterDbtTranslator):
    """Asset keys say where data lives: `warehouse/<layer>/<model>`; groups are the layers.
    Sources keep the keys their `meta.dagster.asset_key` gives them (the landing assets)."""

    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        layer = dbt_resource_props["config"].get("schema") or "main"
        return dg.AssetKey(["warehouse", layer, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return "landing"
        return dbt_resource_props["config"].get("schema")
