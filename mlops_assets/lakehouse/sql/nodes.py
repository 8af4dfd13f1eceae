"""What the rewrite rules share: the facts about a query a rule may need, the type sqlglot
annotated a node with, and DuckDB calls built as sqlglot nodes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

INTEGER_TYPES = {"TINYINT", "SMALLINT", "INT", "BIGINT"}
FLOAT_TYPES = {"DOUBLE", "FLOAT"}
_VARCHAR_NAMES = {"TEXT": "VARCHAR", "CHAR": "VARCHAR", "NCHAR": "VARCHAR", "NVARCHAR": "VARCHAR"}


@dataclass(frozen=True)
class Context:
    """Facts about the whole query. `decimals`: it reads a decimal (a literal such as 1.0, a
    decimal cast or a decimal column), so an operand whose type sqlglot cannot tell may be one."""

    decimals: bool


def type_name(node: exp.Expression) -> str:
    """The sqlglot type of an annotated node: INT, BIGINT, DOUBLE, DECIMAL, VARCHAR, DATE, ... or
    UNKNOWN."""
    kind = node.type.this if node.type is not None else exp.DataType.Type.UNKNOWN
    name = kind.name if hasattr(kind, "name") else str(kind)
    return _VARCHAR_NAMES.get(name, name)


def duck(name: str, *args: exp.Expression) -> exp.Expression:
    """A call of DuckDB's function `name`."""
    return exp.Anonymous(this=name, expressions=list(args))


def error(message: str) -> exp.Expression:
    """DuckDB's error(): fails the query when evaluated, for what only the values decide."""
    return duck("error", exp.Literal.string(message))
