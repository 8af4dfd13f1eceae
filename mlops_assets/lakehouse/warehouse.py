"""The warehouse dbt builds (bronze, silver, gold), queried with schema-qualified names such as
`gold.churn_labels`: DuckDB's file in the embedded profile, Trino in production. The same SQL runs
on both (dbt-duckdb exposes gold's Parquet as views)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd


class Warehouse(Protocol):
    """What library code needs of a warehouse (the resources in mlops_assets/resources.py)."""

    def query(self, sql: str) -> pd.DataFrame: ...


def duckdb_query(path: str, sql: str) -> pd.DataFrame:
    """One read-only query on the embedded warehouse file."""
    import duckdb

    from mlops_assets.lakehouse.duck import configure_s3

    with duckdb.connect(path, read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        configure_s3(con)  # gold's views read Parquet on S3 on the services profile
        return con.execute(sql).df()


@dataclass(frozen=True)
class TrinoConnection:
    host: str
    port: int
    user: str
    password: str | None
    catalog: str
    http_scheme: str
    verify: bool | str = True  # TLS: verify against the system CAs, or this CA bundle's path


class TrinoConfigError(ValueError):
    """A Trino connection that cannot be made as configured (the message says what to change)."""


def _session(verify: bool | str) -> Any:
    """An HTTP session whose `verify` is the one configured: plain requests lets the
    REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE variables override a session's CA bundle (many machines
    and images set them), so a private CA configured for Trino would be silently ignored."""
    import requests

    class PinnedVerifySession(requests.Session):
        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            settings["verify"] = self.verify
            return settings

    session = PinnedVerifySession()
    session.verify = verify
    return session


def trino_query(connection: TrinoConnection, sql: str) -> pd.DataFrame:
    import pandas as pd
    import trino

    if connection.password and connection.http_scheme != "https":
        # Trino refuses passwords over plain HTTP; say so before sending one in clear text.
        raise TrinoConfigError(
            "TRINO_PASSWORD is set but TRINO_HTTP_SCHEME is "
            f"{connection.http_scheme!r}: Trino takes a password only over https"
        )
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
        verify=connection.verify,
        http_session=_session(connection.verify),
    )
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return pd.DataFrame(cur.fetchall(), columns=[c[0] for c in cur.description])
    finally:
        conn.close()
