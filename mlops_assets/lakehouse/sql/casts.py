"""CAST and TRY_CAST: DuckDB's cast where it gives Trino's answer, a rewrite where the difference
is known, refused otherwise."""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlglot import exp

from .errors import refuse_function
from .nodes import FLOAT_TYPES, INTEGER_TYPES, Context, duck, error, type_name

# Target kind -> the source types whose DuckDB cast gives Trino's answer unchanged.
_ALIKE = {
    "INTEGER": {*INTEGER_TYPES, "DECIMAL", "BOOLEAN", "NULL"},
    "DOUBLE": {*INTEGER_TYPES, *FLOAT_TYPES, "DECIMAL", "VARCHAR", "BOOLEAN", "NULL"},
    "VARCHAR": {*INTEGER_TYPES, "VARCHAR", "BOOLEAN", "DATE", "DECIMAL", "NULL"},
    "DATE": {"VARCHAR", "DATE", "TIMESTAMP", "TIMESTAMPTZ", "NULL"},
    "TIMESTAMP": {"DATE", "NULL"},
    "DECIMAL": {*INTEGER_TYPES, "DECIMAL", "NULL"},
    "BOOLEAN": {*INTEGER_TYPES, "BOOLEAN", "NULL"},
}
_ISO_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?( UTC|Z|[+-]00:00)?$"
)
_PLAIN_DECIMAL = re.compile(r"^[+-]?\d+(\.\d*)?$")
# Typed literals (DECIMAL '2.5', TIMESTAMP '2025-03-01 10:00:00 UTC') DuckDB reads as Trino does.
_LITERALS = {"DECIMAL": _PLAIN_DECIMAL, "TIMESTAMP": _ISO_TIMESTAMP}


def cast(node: exp.Expression, context: Context) -> exp.Expression | None:
    """Trino's CAST where DuckDB's differs (None: DuckDB's is Trino's); refused when not known to
    agree."""
    value = node.this
    source = "NULL" if isinstance(value, exp.Null) else type_name(value)
    kind = _target_kind(node.to)
    if source == "UNKNOWN":
        raise refuse_function(
            _name(node), f"to {_target_sql(node)} of a value whose type cannot be determined"
        )
    if kind == "TIMESTAMP(6)":  # timestamps convert alike only to timestamp(6)
        kind, source = "TIMESTAMP", "DATE" if source in {"TIMESTAMP", "TIMESTAMPTZ"} else source
    if source in _ALIKE.get(kind, set()) or _typed_literal(value, kind):
        return None
    rewrite = _REWRITES.get((kind, source))
    if rewrite is None:
        raise refuse_function(_name(node), f"from {source.lower()} to {_target_sql(node)}")
    return rewrite(node)


def _round_half_away(node: exp.Expression) -> exp.Expression:
    """Trino rounds a double half away from zero; DuckDB's cast rounds half to even."""
    return node.__class__(this=exp.Round(this=node.this), to=node.to)


def _varchar_to_integer(node: exp.Expression) -> exp.Expression:
    """Trino accepts only an optionally signed integer ('1.5', ' 7', '1e2' fail)."""
    value = node.this
    valid = duck("regexp_full_match", value, exp.Literal.string(r"[+-]?[0-9]+"))
    converted = exp.case().when(valid, node.__class__(this=value, to=node.to))
    if isinstance(node, exp.TryCast):
        return converted
    message = f"Cannot cast a non-integer varchar to {_target_sql(node)}"
    return converted.when(_not_null(value), error(message))


def _double_to_varchar(node: exp.Expression) -> exp.Expression:
    """Java's Double.toString: plain between 1e-3 and 1e7 (as DuckDB prints it), else scientific
    ("1.0E7"), which DuckDB does not print: an error for those values."""
    value = node.this
    magnitude = exp.Abs(this=value)
    plain = exp.or_(
        exp.EQ(this=value, expression=exp.Literal.number(0)),
        exp.and_(
            exp.GTE(this=magnitude, expression=exp.Literal.number("1e-3")),
            exp.LT(this=magnitude, expression=exp.Literal.number("1e7")),
        ),
    )
    outside = error(
        f"{_name(node)}(double AS varchar) of a value outside [0.001, 1e7) prints in Java's "
        "scientific notation in Trino; use format()"
    )
    converted = node.__class__(this=value, to=node.to)
    return exp.case().when(plain, converted).when(_not_null(value), outside)


# (target kind, source type) -> the rewrite for casts DuckDB computes differently.
_REWRITES: dict[tuple[str, str], Callable[[exp.Expression], exp.Expression]] = {
    **{("INTEGER", source): _round_half_away for source in FLOAT_TYPES},
    ("INTEGER", "VARCHAR"): _varchar_to_integer,
    ("VARCHAR", "DOUBLE"): _double_to_varchar,
}


def _target_kind(target: exp.DataType) -> str:
    """The family of a cast's target type, as _ALIKE and _REWRITES name it (OTHER: refused)."""
    T = exp.DataType.Type
    kind = target.this
    if kind in (T.TINYINT, T.SMALLINT, T.INT, T.BIGINT):
        return "INTEGER"
    if kind in (T.VARCHAR, T.TEXT) and not target.expressions:
        return "VARCHAR"  # varchar(n) truncates in Trino: refused
    if kind in (T.TIMESTAMP, T.TIMESTAMPTZ):
        # timestamp without a precision is timestamp(3) in Trino: only dates convert alike,
        # and timestamps only to timestamp(6).
        precision = [p.name for p in target.expressions]
        return "TIMESTAMP(6)" if precision == ["6"] else "TIMESTAMP"
    return {T.DOUBLE: "DOUBLE", T.DATE: "DATE", T.DECIMAL: "DECIMAL", T.BOOLEAN: "BOOLEAN"}.get(
        kind, "OTHER"
    )


def _typed_literal(value: exp.Expression, kind: str) -> bool:
    """A constant string whose Trino literal of `kind` reads the same in DuckDB."""
    pattern = _LITERALS.get(kind)
    is_string = isinstance(value, exp.Literal) and value.is_string
    return bool(pattern and is_string and pattern.match(value.name))


def _name(node: exp.Expression) -> str:
    return "try_cast" if isinstance(node, exp.TryCast) else "cast"


def _target_sql(node: exp.Expression) -> str:
    return node.to.sql("trino").lower()


def _not_null(value: exp.Expression) -> exp.Expression:
    return exp.Not(this=exp.Is(this=value, expression=exp.Null()))
