"""The warehouse dbt builds (bronze, silver, gold), queried with schema-qualified names such as
`gold.churn_labels`: DuckDB's file in the embedded profile, Trino in production. The same SQL runs
on both (dbt-duckdb exposes gold's Parquet as views)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import pandas as pd


class Warehouse(Protocol):
    """What library code needs of a warehouse (the resources in mlops_assets/resources.py)."""

    def query(self, sql: str) -> pd.DataFrame: ...


def duckdb_query(path: str, sql: str) -> pd.DataFrame:
    """One read-only query on the embedded warehouse file."""
    import duckdb

    with duckdb.connect(path, read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).df()


@dataclass(frozen=True)
class TrinoConnection:
    host: str
    port: int
    user: str
    password: str | None
    catalog: str
    http_scheme: str


def trino_query(connection: TrinoConnection, sql: str) -> pd.DataFrame:
    import pandas as pd
    import trino

    auth = (
        trino.auth.BasicAuthentication(connection.user, connection.password)
        if connection.password
        else trino.constants.DEFAULT_AUTH
    )
    conn = trino.dbapi.connect(
        host=connection.host,
        port=connection.port,
        user=connection.user,
        catalog=connection.catalog,
        http_scheme=connection.http_scheme,
        auth=auth,
    )
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return pd.DataFrame(cur.fetchall(), columns=[c[0] for c in cur.description])
    finally:
        conn.close()
