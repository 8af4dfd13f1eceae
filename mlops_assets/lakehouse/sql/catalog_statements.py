"""SHOW SCHEMAS, SHOW TABLES, SHOW COLUMNS and DESCRIBE, answered from the Iceberg catalog with
Trino's column names, type names and error messages; any other SHOW or DESCRIBE is refused."""

from __future__ import annotations

import re
from collections.abc import Callable

import pandas as pd

from .catalog_tables import TRINO_CATALOG, CatalogTables, trino_type
from .errors import QueryError, refuse

_NAME = r'(?:"(?:[^"]|"")+"|[\w$]+)(?:\s*\.\s*(?:"(?:[^"]|"")+"|[\w$]+))*'
_LIKE = r"(?:\s+like\s+'(?P<like>(?:[^']|'')*)')?"
_END = r"\s*;?\s*$"
_SHOW_SCHEMAS = re.compile(
    rf"^\s*show\s+schemas(?:\s+(?:from|in)\s+(?P<name>{_NAME}))?{_LIKE}{_END}", re.I
)
_SHOW_TABLES = re.compile(
    rf"^\s*show\s+tables(?:\s+(?:from|in)\s+(?P<name>{_NAME}))?{_LIKE}{_END}", re.I
)
_SHOW_COLUMNS = re.compile(
    rf"^\s*(?:show\s+columns\s+(?:from|in)|describe)\s+(?P<name>{_NAME}){_END}", re.I
)
_SHOW_OTHER = re.compile(r"^\s*(show\s+\w+(?:\s+\w+)?|describe\s+\w+)", re.I)


def answer_catalog_statement(sql: str, tables: CatalogTables) -> pd.DataFrame | None:
    """The answer to a SHOW or DESCRIBE statement, or None if `sql` is neither."""
    for pattern, show in _STATEMENTS:
        if match := pattern.match(sql):
            return show(match, tables)
    if match := _SHOW_OTHER.match(sql):
        raise refuse(" ".join(match[1].upper().split()))
    return None


def _show_schemas(match: re.Match[str], tables: CatalogTables) -> pd.DataFrame:
    parts = _parts(match["name"] or TRINO_CATALOG)
    if parts != [TRINO_CATALOG]:
        raise QueryError(f"Catalog '{'.'.join(parts)}' does not exist")
    names = sorted({*tables.schemas, "information_schema"})
    return pd.DataFrame({"Schema": _like(names, match["like"])})


def _show_tables(match: re.Match[str], tables: CatalogTables) -> pd.DataFrame:
    if not match["name"]:
        raise QueryError("Schema must be specified when session schema is not set")
    parts = _parts(match["name"])
    if len(parts) == 2 and parts[0] != TRINO_CATALOG:
        raise QueryError(f"Catalog '{parts[0]}' does not exist")
    if len(parts) not in (1, 2):
        raise QueryError(f"Too many parts in schema name: {match['name']}")
    schema = parts[-1]
    if schema not in tables.schemas:
        raise QueryError(f"Schema '{schema}' does not exist")
    names = sorted(table for s, table in tables.names() if s == schema)
    return pd.DataFrame({"Table": _like(names, match["like"])})


def _show_columns(match: re.Match[str], tables: CatalogTables) -> pd.DataFrame:
    parts = _parts(match["name"])
    if len(parts) == 3 and parts[0] == TRINO_CATALOG:
        parts = parts[1:]
    if len(parts) != 2:
        raise QueryError(
            f"Table '{match['name']}' does not exist (name it iceberg.<schema>.<table>)"
        )
    table = tables.get((parts[0], parts[1]))
    if table is None:
        raise QueryError(f"Table '{TRINO_CATALOG}.{'.'.join(parts)}' does not exist")
    fields = table.schema().fields
    return pd.DataFrame(
        {
            "Column": [f.name for f in fields],
            "Type": [trino_type(f.field_type) for f in fields],
            "Extra": ["" for _ in fields],
            "Comment": [f.doc or "" for f in fields],
        }
    )


_STATEMENTS: tuple[
    tuple[re.Pattern[str], Callable[[re.Match[str], CatalogTables], pd.DataFrame]], ...
] = (
    (_SHOW_SCHEMAS, _show_schemas),
    (_SHOW_TABLES, _show_tables),
    (_SHOW_COLUMNS, _show_columns),
)


def _parts(name: str) -> list[str]:
    """Identifier parts as Trino resolves them (case-insensitive, quotes removed)."""
    parts = re.findall(r'"((?:[^"]|"")+)"|([\w$]+)', name)
    return [(quoted.replace('""', '"') or bare).lower() for quoted, bare in parts]


def _like(names: list[str], pattern: str | None) -> list[str]:
    """The names matching a LIKE pattern (% and _ wildcards, no escape), all without one."""
    if pattern is None:
        return names
    pattern = pattern.replace("''", "'")
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    compiled = re.compile(rf"^{regex}$", re.S)
    return [name for name in names if compiled.match(name)]
