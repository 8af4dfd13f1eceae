"""Queries against the production warehouse (Trino), from the same settings dbt's prod target uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops_assets.settings import Settings

if TYPE_CHECKING:
    import pandas as pd


def trino_query(settings: Settings, sql: str) -> pd.DataFrame:
    import pandas as pd
    import trino

    conn = trino.dbapi.connect(
        host=settings.trino_host,
        port=settings.trino_port,
        user=settings.trino_user,
        catalog=settings.trino_catalog,
        http_scheme=settings.trino_http_scheme,
    )
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return pd.DataFrame(cur.fetchall(), columns=[c[0] for c in cur.description])
    finally:
        conn.close()
