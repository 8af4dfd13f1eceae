"""Analyst SQL in Trino's dialect, run embedded: DuckDB, with the Iceberg extension shipped on PyPI,
reads the Iceberg tables of a pyiceberg catalog, and sqlglot translates the SQL. Tables are named as
Trino names them: iceberg.<namespace>.<table>. Which engine answers analysts (this one, or Trino in
production) is the caller's choice, not this package's.

The embedded engine answers a query exactly as Trino would, or refuses it; it never gives a
different answer. The query is parsed with sqlglot's Trino dialect and every function and construct
in it must be on the allow-list (functions.py), whose DuckDB translations
tests/test_sql_conformance.py checks against pandas; anything else is a `QueryError` that names it.
Where DuckDB's built-in differs from Trino the translation is explicit:

- `format(fmt, ...)` (Java format strings) becomes string building for %s, %d, %f (width, precision,
  the '-' flag, '0' for %d) and %%, rounding %f half-up as Java does; other specifiers are refused.
- `approx_distinct(x)` is an exact `count(DISTINCT x)`: within Trino's 2.3 % standard error, and
  deterministic. `approx_percentile(x, p)` is the exact order statistic `quantile_disc(x, p)` (a
  value of x whose rank is p * n; Trino's answer is within its rank error of it), typed like x.
- Integer division truncates (`7 / 2` = 3) and division or modulo by zero is an error; division and
  `avg` of decimals (e.g. of the literal `1.0`) are refused: Trino rounds them to the operands'
  scale (`avg(1.0, 0.0, 0.0)` is 0.3), which DuckDB cannot reproduce.
- Result types follow Trino: integer aggregates (`count_if`, `sum` of integers) are bigint (int64
  columns, Int64 when they hold NULLs), never DuckDB's HUGEINT (which pandas would make float64).
- `max_by`/`min_by` keep a NULL x of the maximal row (DuckDB's `arg_max` would skip it),
  `date_diff` counts whole units elapsed (DuckDB's `date_sub`), `day_of_week`/`extract(dow)` are ISO
  (Monday = 1), date arithmetic on a date stays a date, `CAST(double AS integer)` rounds half away
  from zero, and the session time zone is UTC.
- `SHOW SCHEMAS`, `SHOW TABLES`, `SHOW COLUMNS` and `DESCRIBE` are answered from the Iceberg catalog
  with Trino's column names and type names.
- One read-only statement per call: writes (INSERT, CREATE, DROP, ...) and a second statement are
  refused.

Modules: translate (parse, allow-list, rewrites applied), functions (the allow-list: one rule per
function and construct), rewrites, casts and java_format (the rules' checks and rewrites),
catalog_statements (SHOW / DESCRIBE), catalog_tables (the catalog's tables, Trino type names),
engine (DuckDB: connection, extensions, views, result types).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import QueryError

if TYPE_CHECKING:
    import pandas as pd
    from pyiceberg.catalog import Catalog

__all__ = ["QueryError", "run_sql", "to_duckdb"]

# The modules below are imported when a query runs, not with the package: sqlglot and DuckDB take
# most of a second to import, and callers import the package when they start (for QueryError).


def run_sql(catalog: Catalog, sql: str) -> pd.DataFrame:
    """One Trino-dialect query (or SHOW / DESCRIBE) over the Iceberg tables of `catalog`, answered
    as Trino answers it; a QueryError if it is refused or fails."""
    from .catalog_statements import answer_catalog_statement
    from .catalog_tables import CatalogTables
    from .engine import run
    from .translate import translate

    tables = CatalogTables.of(catalog)
    answer = answer_catalog_statement(sql, tables)
    if answer is not None:
        return answer
    duck_sql, used = translate(sql, tables)
    return run(tables, duck_sql, used)


def to_duckdb(sql: str, catalog: Catalog | None = None) -> str:
    """The DuckDB SQL run_sql runs for a Trino query, or a QueryError. Without a catalog the query
    is translated without its tables' column types (what needs them is refused)."""
    from .catalog_tables import CatalogTables
    from .translate import translate

    tables = CatalogTables.empty() if catalog is None else CatalogTables.of(catalog)
    return translate(sql, tables)[0]
