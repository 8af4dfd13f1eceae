"""DuckDB as the embedded engine: a connection per query with Trino's session semantics, the
Iceberg extension shipped on PyPI, a view named like Trino's table (iceberg.<schema>.<table>) for
each table the query reads, and results typed as Trino types them."""

from __future__ import annotations

import contextlib

import duckdb
import pandas as pd

from mlops_assets.lakehouse.duck import configure_s3, extension_path

from .catalog_tables import TRINO_CATALOG, CatalogTables, TableKey
from .errors import QueryError

# DuckDB's extensions as shipped on PyPI; avro first: the iceberg extension reads manifests with it.
_EXTENSIONS = ("avro", "iceberg")
# Trino's / and % fail on zero; DuckDB's give NULL (the rewrites call these for / and %).
_MACROS = (
    "CREATE MACRO trino_divide(a, b) AS "
    "CASE WHEN b = 0 THEN error('Division by zero') ELSE a / b END",
    "CREATE MACRO trino_modulus(a, b) AS "
    "CASE WHEN b = 0 THEN error('Division by zero') ELSE a % b END",
)
# DuckDB compares intervals normalized (1 month == 30 days), and these optimizers merge "equal"
# expressions: d + INTERVAL 1 MONTH would come back as d + INTERVAL 30 DAY.
_MERGING_OPTIMIZERS = "common_subexpressions,common_aggregate,duplicate_groups"
# DuckDB's 128-bit and unsigned results (sum, count_if of integers) are bigint in Trino.
_WIDE_INTEGERS = {"HUGEINT", "UHUGEINT", "UBIGINT"}


def run(tables: CatalogTables, duck_sql: str, used: set[TableKey]) -> pd.DataFrame:
    """Run translated SQL over views of the tables it reads; a QueryError if DuckDB fails."""
    con = connect(tables, used)
    try:
        return _execute(con, duck_sql)
    except duckdb.Error as err:
        message = str(err).split("\n")[0]
        raise QueryError(f"query failed: {message}") from None
    finally:
        with contextlib.suppress(Exception):
            con.close()


def connect(tables: CatalogTables, used: set[TableKey]) -> duckdb.DuckDBPyConnection:
    """DuckDB with views of the `used` tables, Trino's division semantics and time zone UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET integer_division = true")  # int / int truncates, as in Trino
    con.execute(f"SET disabled_optimizers = '{_MERGING_OPTIMIZERS}'")
    for macro in _MACROS:
        con.execute(macro)
    for name in _EXTENSIONS:
        con.execute(f"LOAD '{extension_path(name)}'")
    # A REST catalog's tables live on S3: DuckDB reads their files with the node's secret.
    configure_s3(con)
    con.execute(f"ATTACH ':memory:' AS {TRINO_CATALOG}")
    for schema in tables.schemas:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS {TRINO_CATALOG}."{schema}"')
    for schema, name in sorted(used & tables.names()):
        location = tables.get((schema, name)).metadata_location
        con.execute(
            f'CREATE VIEW {TRINO_CATALOG}."{schema}"."{name}" AS '
            f"SELECT * FROM iceberg_scan('{location}')"
        )
    return con


def _execute(con: duckdb.DuckDBPyConnection, duck_sql: str) -> pd.DataFrame:
    """The result of the query, with DuckDB's wide integers as bigint."""
    relation = con.sql(duck_sql)
    wide = [i for i, kind in enumerate(relation.types) if str(kind) in _WIDE_INTEGERS]
    if not wide:
        return relation.df()
    names = relation.columns
    if len(set(names)) == len(names):  # cast in DuckDB: keeps NULLs without pandas' float64
        quoted = ['"' + n.replace('"', '""') + '"' for n in names]
        projection = ", ".join(
            f"CAST({q} AS BIGINT) AS {q}" if i in wide else q for i, q in enumerate(quoted)
        )
        return relation.project(projection).df()
    frame = relation.df()  # duplicate names cannot be projected by name: convert in pandas
    for i in wide:
        column = frame.iloc[:, i]
        frame.isetitem(i, column.astype("Int64" if column.isna().any() else "int64"))
    return frame
