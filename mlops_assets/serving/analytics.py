"""Analyst SQL in Trino's dialect: on Trino in prod; in the embedded profile on DuckDB, with the
Iceberg extension shipped on PyPI reading the same Iceberg tables and sqlglot translating the SQL.
Tables are named as Trino names them: iceberg.<namespace>.<table>."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_assets.settings import Environment, Settings

if TYPE_CHECKING:
    import pandas as pd

TRINO_CATALOG = "iceberg"


class QueryError(ValueError):
    pass


def _load_extensions(con: Any) -> None:
    import duckdb_extension_avro
    import duckdb_extension_iceberg

    for module, name in ((duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
        path = next(
            __import__("pathlib").Path(module.__file__).parent.rglob(f"{name}.duckdb_extension")
        )
        con.execute(f"LOAD '{path}'")


def duckdb_connection(settings: Settings) -> Any:
    """DuckDB with every Iceberg table of the catalog as a view named like Trino's table."""
    import duckdb

    from mlops_assets.serving.iceberg import catalog

    cat = catalog(settings)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    _load_extensions(con)
    con.execute(f"ATTACH ':memory:' AS {TRINO_CATALOG}")
    for namespace in cat.list_namespaces():
        schema = ".".join(namespace)
        con.execute(f'CREATE SCHEMA IF NOT EXISTS {TRINO_CATALOG}."{schema}"')
        for identifier in cat.list_tables(namespace):
            table = cat.load_table(identifier)
            con.execute(
                f'CREATE VIEW {TRINO_CATALOG}."{schema}"."{identifier[-1]}" AS '
                f"SELECT * FROM iceberg_scan('{table.metadata_location}')"
            )
    return con


def to_duckdb(sql: str) -> str:
    import sqlglot
    from sqlglot.errors import ParseError

    try:
        statements = sqlglot.transpile(sql, read="trino", write="duckdb")
    except ParseError as err:
        raise QueryError(f"not valid Trino SQL: {err}") from None
    if len(statements) != 1:
        raise QueryError(f"expected one statement, got {len(statements)}")
    return statements[0]


def run_sql(settings: Settings, sql: str) -> pd.DataFrame:
    """Run one Trino-dialect query and return the result."""
    if settings.env is Environment.PROD:
        from mlops_assets.trino import trino_query

        return trino_query(settings, sql)
    import duckdb

    con = duckdb_connection(settings)
    try:
        return con.execute(to_duckdb(sql)).df()
    except duckdb.Error as err:
        raise QueryError(f"query failed: {err}") from None
    finally:
        con.close()
