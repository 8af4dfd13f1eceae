"""Trino SQL to DuckDB SQL: parse one read statement, hold it to the allow-list, qualify its tables
as Trino does, type it with sqlglot when a rule needs types, apply the rewrites and print it in
DuckDB's dialect."""

from __future__ import annotations

import logging

import sqlglot
from sqlglot import exp
from sqlglot.errors import (
    ErrorLevel,
    OptimizeError,
    ParseError,
    SchemaError,
    TokenError,
    UnsupportedError,
)
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify

from .catalog_tables import TRINO_CATALOG, CatalogTables, TableKey
from .errors import QueryError, refuse, refuse_function
from .functions import UNSUPPORTED_CONSTRUCTS, function_name, rule_of
from .nodes import Context

# Statements that are not a read, by sqlglot's class; None: named by their first word (EXPLAIN,
# CALL, PREPARE, ...).
_WRITES = {
    "Insert": "INSERT",
    "Create": "CREATE",
    "Drop": "DROP",
    "Delete": "DELETE",
    "Update": "UPDATE",
    "Merge": "MERGE",
    "Alter": "ALTER",
    "TruncateTable": "TRUNCATE",
    "Grant": "GRANT",
    "Revoke": "REVOKE",
    "Set": "SET",
    "Use": "USE",
    "Command": None,
}


def translate(sql: str, tables: CatalogTables) -> tuple[str, set[TableKey]]:
    """The DuckDB SQL giving Trino's answer to `sql`, and the (schema, table) pairs it reads; a
    QueryError for what cannot be exact."""
    tree = parse_query(sql)
    _check_allowed(tree)
    _check_arguments(tree)
    _qualify_table_names(tree)
    used = _used_tables(tree)
    # element_at is verified on arrays only, and the syntax cannot tell an array from a map column
    if tree.find(exp.Bracket) and any("map(" in kind for kind in tables.column_types(used)):
        raise refuse_function("element_at", "on a table with map columns")
    _name_columns_like_trino(tree)
    context = Context(decimals=_reads_decimals(tree, tables))
    if any(rule.typed for rule in map(rule_of, tree.walk()) if rule):
        tree = _annotate(tree, tables)
    _rewrite(tree, context)
    try:
        return tree.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE), used
    except UnsupportedError as err:
        raise refuse(f"part of this query ({err})") from None


def parse_query(sql: str) -> exp.Query:
    """One Trino statement, checked to be a read."""
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)  # sqlglot warns on syntax it falls back on: refused later
    try:
        statements = [s for s in sqlglot.parse(sql, read="trino") if s is not None]
    except (ParseError, TokenError) as err:
        raise QueryError(f"not valid Trino SQL: {err}") from None
    finally:
        logger.setLevel(level)
    if len(statements) != 1:
        raise QueryError(f"expected one statement, got {len(statements)}")
    [tree] = statements
    kind = type(tree).__name__
    if kind in _WRITES:
        word = _WRITES[kind] or str(tree.this).upper()
        raise QueryError(f"only queries (SELECT) run here: {word} is not allowed")
    if not isinstance(tree, exp.Query):
        raise QueryError(f"only queries (SELECT) run here, not {kind.upper()}")
    return tree


def _check_allowed(tree: exp.Expression) -> None:
    for node in tree.walk():
        if rule_of(node) is not None:
            continue
        if isinstance(node, exp.Func):
            raise refuse_function(function_name(node))
        kind = type(node).__name__
        raise refuse(UNSUPPORTED_CONSTRUCTS.get(kind, f"the construct {kind}"))


def _check_arguments(tree: exp.Expression) -> None:
    """The rules' checks of argument forms; after the allow-list, which names an unknown function
    first."""
    for node in tree.walk():
        for check in rule_of(node).checks:
            check(node, function_name(node))


def _qualify_table_names(tree: exp.Expression) -> None:
    """schema.table means iceberg.schema.table (Trino's session catalog is iceberg)."""
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if not table.name or isinstance(table.this, exp.Func):
            continue
        if table.args.get("db") and not table.args.get("catalog"):
            table.set("catalog", exp.to_identifier(TRINO_CATALOG))
        elif not table.args.get("db") and table.name.lower() not in ctes:
            raise QueryError(
                f"table {table.name} does not exist: name tables as iceberg.<schema>.<table>"
            )


def _used_tables(tree: exp.Expression) -> set[TableKey]:
    return {
        (t.db.lower(), t.name.lower())
        for t in tree.find_all(exp.Table)
        if t.catalog.lower() == TRINO_CATALOG
    }


def _name_columns_like_trino(tree: exp.Expression) -> None:
    """Unnamed result columns are _col0, _col1, ... (by position), as Trino names them."""
    for select in tree.find_all(exp.Select):
        for i, expression in enumerate(select.expressions):
            if isinstance(expression, exp.Alias | exp.Column | exp.Star):
                continue
            expression.replace(exp.alias_(expression.copy(), f"_col{i}", quoted=True))


def _is_decimal_literal(node: exp.Expression) -> bool:
    """1.0 is a decimal in Trino (1e0 is a double)."""
    if not isinstance(node, exp.Literal) or node.is_string:
        return False
    text = str(node.this)
    return "." in text and "e" not in text.lower()


def _is_decimal_type(node: exp.Expression) -> bool:
    return isinstance(node, exp.DataType) and node.this == exp.DataType.Type.DECIMAL


def _reads_decimals(tree: exp.Expression, tables: CatalogTables) -> bool:
    """A decimal literal, a decimal cast or a decimal column of a table the query reads."""
    if any(_is_decimal_literal(node) or _is_decimal_type(node) for node in tree.walk()):
        return True
    return any("decimal" in kind for kind in tables.column_types(_used_tables(tree)))


def _annotate(tree: exp.Expression, tables: CatalogTables) -> exp.Expression:
    """Qualify and type the tree with sqlglot. Decimal literals and decimal casts are typed as
    an unparameterized DECIMAL for the annotation only (so double wins over decimal in coercion,
    as in Trino); the original nodes are put back, keeping their types."""
    swapped: list[tuple[exp.Expression, exp.Expression]] = []
    for node in list(tree.walk()):
        if _is_decimal_literal(node):
            stand_in = exp.Cast(this=node.copy(), to=exp.DataType.build("DECIMAL"))
        elif _is_decimal_type(node) and node.expressions:  # decimal(p, s)
            stand_in = exp.DataType.build("DECIMAL")
        else:
            continue
        node.replace(stand_in)
        swapped.append((stand_in, node))
    schema = tables.sqlglot_schema(_used_tables(tree))
    try:
        tree = qualify(tree, dialect="trino", schema=schema, quote_identifiers=True)
        tree = annotate_types(tree, schema=schema, dialect="trino")
    except (OptimizeError, SchemaError) as err:
        raise QueryError(f"query failed: {err}") from None
    finally:
        for stand_in, original in swapped:
            typed = stand_in.type
            if stand_in.parent is not None:
                stand_in.replace(original)
            original.type = typed
    return tree


def _rewrite(tree: exp.Expression, context: Context) -> None:
    """Replace what DuckDB computes differently, children before parents."""
    for node in reversed(list(tree.walk())):
        if node.parent is None and node is not tree:
            continue  # replaced with its parent already
        rule = rule_of(node)
        new = rule.rewrite(node, context) if rule and rule.rewrite else None
        if new is not None and new is not node:
            if new.type is None or new.type.this == exp.DataType.Type.UNKNOWN:
                new.type = node.type  # parents still look at this node's type
            node.replace(new)
