"""The checks and rewrites of supported functions and operators whose DuckDB built-in differs from
Trino (functions.py says which apply to which; CAST and format() have their own modules).

A check sees the parsed query and refuses an argument form whose translation is not exact. A
rewrite sees the typed query, children before parents, and returns the DuckDB form (None keeps the
node) or refuses what the types show cannot be exact."""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlglot import exp

from .errors import refuse, refuse_function
from .nodes import INTEGER_TYPES, Context, duck, error, type_name

Check = Callable[[exp.Expression, str], None]  # (node, the function's Trino name)
Rewrite = Callable[[exp.Expression, Context], exp.Expression | None]

# The units DuckDB counts as Trino does: date_diff's, and date_add's and date_trunc's.
DATE_UNITS = {"millisecond", "second", "minute", "hour", "day", "week"}
ADD_UNITS = DATE_UNITS | {"month", "quarter", "year"}
# extract(field FROM x): the DuckDB function giving Trino's field (days of the week are ISO).
_EXTRACT = {
    "YEAR": "year",
    "QUARTER": "quarter",
    "MONTH": "month",
    "WEEK": "week",
    "DAY": "day",
    "DAY_OF_MONTH": "day",
    "DOW": "isodow",
    "DAY_OF_WEEK": "isodow",
    "DOY": "dayofyear",
    "DAY_OF_YEAR": "dayofyear",
    "YOW": "isoyear",
    "YEAR_OF_WEEK": "isoyear",
    "HOUR": "hour",
    "MINUTE": "minute",
    "SECOND": "second",
}
# date_format: the strftime specifiers (after sqlglot's mapping from Trino's MySQL-style ones) that
# print what Trino prints; %D, %U, %u, %V, %w, %X and %x do not.
_STRFTIME_OK = {*"YymdHIMSfpjaAbB%", "-m", "-d", "-H", "-I"}
_JSON_PATH = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*$")
# / and %: the operation's name (for messages) and the engine's macro that computes it.
_DIVISIONS = {exp.Div: ("division", "trino_divide"), exp.Mod: ("modulus", "trino_modulus")}

# -- checks ----------------------------------------------------------------------------------------


def without(arg: str, why: str) -> Check:
    """Refuse the function when it is given the argument `arg`."""

    def check(node: exp.Expression, name: str) -> None:
        if node.args.get(arg) is not None:
            raise refuse_function(name, why)

    return check


def unit_in(units: set[str]) -> Check:
    """Refuse a date function with a unit DuckDB counts differently."""

    def check(node: exp.Expression, name: str) -> None:
        if _unit(node) not in units:
            raise refuse_function(name, f"unit '{_unit(node)}'")

    return check


def constant_digits(node: exp.Expression, name: str) -> None:
    """round(x, d) only with constant digits, the form the conformance suite verifies."""
    digits = node.args.get("decimals")
    if digits is not None and not isinstance(digits, exp.Literal | exp.Neg):
        raise refuse_function(name, "non-constant digits")


def safe_subscript(node: exp.Expression, name: str) -> None:
    """element_at(a, i) (a safe subscript to sqlglot) is NULL out of range in both; a[i] fails in
    Trino."""
    if not node.args.get("safe"):
        raise refuse("the subscript a[i]", "Trino fails out of range; use element_at(a, i)")


def single_array(node: exp.Expression, name: str) -> None:
    if len(node.expressions) != 1 or node.args.get("offset"):
        raise refuse("UNNEST of several arrays or WITH ORDINALITY")


def known_field(node: exp.Expression, name: str) -> None:
    if node.name.upper() not in _EXTRACT:
        raise refuse_function(name, f"field {node.name.upper()}")


def printable_date_format(node: exp.Expression, name: str) -> None:
    """A constant format whose specifiers strftime prints as Trino does, and no time zone."""
    fmt = node.args.get("format")
    if not isinstance(fmt, exp.Literal) or not fmt.is_string:
        raise refuse_function(name, "a non-constant format")
    if isinstance(node.args.get("zone"), exp.Expression):
        raise refuse_function(name, "a time zone argument")
    bad = [s for s in re.findall(r"%(-?.)", fmt.name) if s not in _STRFTIME_OK]
    if bad:
        raise refuse_function(name, f"specifier %{bad[0].lstrip('-')}")


def simple_json_path(node: exp.Expression, name: str) -> None:
    """A constant path of keys and indexes ($.a.b[0]), which DuckDB's JSON paths read alike."""
    if not isinstance(node.expression, exp.JSONPath | exp.Literal):
        raise refuse_function(name, "a non-constant path")
    if not _JSON_PATH.match(_json_path(node)):
        raise refuse_function(name, f"path {_json_path(node)!r}")


# -- rewrites --------------------------------------------------------------------------------------


def as_duckdb(function: str, *args: str) -> Rewrite:
    """Call DuckDB's `function` with the node's arguments `args` (as sqlglot names them)."""

    def rewrite(node: exp.Expression, context: Context) -> exp.Expression:
        return duck(function, *(node.args[arg] for arg in args))

    return rewrite


def division(node: exp.Expression, context: Context) -> exp.Expression:
    """Integer / and % truncate in Trino (DuckDB's integer_division setting) and fail on zero (the
    engine's trino_divide / trino_modulus macros). Of decimals, Trino rounds the result to the
    operands' scale, which DuckDB cannot reproduce: refused."""
    name, macro = _DIVISIONS[type(node)]
    if context.decimals:
        kinds = {type_name(node.this), type_name(node.expression)}
        if "DECIMAL" in kinds:
            raise refuse(
                f"{name} of decimal values",
                "Trino rounds the result to the operands' scale, e.g. 1.0 / 3 = 0.3; "
                "cast an operand to double",
            )
        if "UNKNOWN" in kinds:
            raise refuse(f"{name} of values whose type cannot be determined")
    return duck(macro, node.this, node.expression)


def avg(node: exp.Expression, context: Context) -> None:
    """DuckDB's avg is Trino's except of decimals, which Trino rounds: refused."""
    if not context.decimals:
        return
    kind = type_name(node.this)
    if kind == "DECIMAL":
        raise refuse_function(
            "avg",
            "Trino's avg of a decimal is rounded to the decimal's scale, e.g. "
            "avg(1.0, 0.0, 0.0) = 0.3; cast the argument to double",
        )
    if kind == "UNKNOWN":
        raise refuse_function("avg", "the argument's type cannot be determined")


def count_if(node: exp.Expression, context: Context) -> exp.Expression:
    """Trino's count_if is 0 where no row is true (all NULL, or no rows); DuckDB's is NULL
    there (it sums). A count of the rows where it holds is never NULL, and bigint."""
    case = exp.Case(ifs=[exp.If(this=node.this, true=exp.Literal.number(1))])
    return exp.Count(this=case)


def approx_distinct(node: exp.Expression, context: Context) -> exp.Expression:
    """The exact count: within Trino's 2.3 % standard error, and deterministic."""
    return exp.cast(exp.Count(this=exp.Distinct(expressions=[node.this])), "BIGINT")


def approx_percentile(node: exp.Expression, context: Context) -> exp.Expression:
    """The exact order statistic (within Trino's rank error of its answer), typed like x."""
    quantile = node.args["quantile"]
    result = duck("quantile_disc", node.this, quantile)
    if type_name(node.this) in INTEGER_TYPES:  # Trino's integer percentiles are bigint
        bigint = "BIGINT[]" if isinstance(quantile, exp.Array) else "BIGINT"
        result = exp.cast(result, exp.DataType.build(bigint, dialect="duckdb"))
    return result


def date_diff(node: exp.Expression, context: Context) -> exp.Expression:
    """Whole units elapsed, as DuckDB's date_sub counts them (its date_diff counts boundaries)."""
    return duck("date_sub", exp.Literal.string(_unit(node)), node.expression, node.this)


def extract(node: exp.Expression, context: Context) -> exp.Expression:
    return duck(_EXTRACT[node.name.upper()], node.expression)


def date_stays_date(node: exp.Expression, context: Context) -> exp.Expression | None:
    """date_trunc and date_add of a date are a date in Trino, a timestamp in DuckDB."""
    return exp.cast(node.copy(), "DATE") if type_name(node.this) == "DATE" else None


def date_arithmetic(node: exp.Expression, context: Context) -> exp.Expression | None:
    """date ± interval is a date in Trino; date - date is no Trino operator."""
    left, right = type_name(node.this), type_name(node.expression)
    if isinstance(node.expression, exp.Interval) and left == "DATE":
        return exp.cast(node.copy(), "DATE")
    if isinstance(node.this, exp.Interval) and right == "DATE":
        return exp.cast(node.copy(), "DATE")
    if isinstance(node, exp.Sub) and left == right == "DATE":
        raise refuse("date - date", "Trino has no such operator; use date_diff('day', a, b)")
    return None


def json_extract_scalar(node: exp.Expression, context: Context) -> exp.Expression:
    """Trino returns the scalar's text, NULL for objects, arrays, JSON null, a missing path or
    invalid JSON. DuckDB reprints numbers with a fraction or exponent (1.50 -> 1.5), so those are
    an error unless the value is cast to double (where the text does not matter)."""
    value, path = node.this, exp.Literal.string(_json_path(node))
    kind = duck("json_type", value, path)
    as_double = isinstance(node.parent, exp.Cast | exp.TryCast) and node.parent.to.this in (
        exp.DataType.Type.DOUBLE,
    )
    not_scalar = [exp.Literal.string(k) for k in ("OBJECT", "ARRAY", "NULL")]
    result = (
        exp.case()
        .when(exp.Not(this=duck("json_valid", value)), exp.Null())
        .when(exp.In(this=kind, expressions=not_scalar), exp.Null())
    )
    if not as_double:
        reprinted = error(
            "json_extract_scalar() of a JSON number with a fraction or exponent has no exact "
            "equivalent in the embedded engine (cast it to double, or run it on Trino)"
        )
        result = result.when(exp.EQ(this=kind, expression=exp.Literal.string("DOUBLE")), reprinted)
    result = result.else_(duck("json_extract_string", value, path))
    result.type = exp.DataType.build("VARCHAR")
    return result


def _unit(node: exp.Expression) -> str:
    return str(node.unit.name if node.unit else "day").lower()


def _json_path(node: exp.Expression) -> str:
    """The path as written (sqlglot parses a constant path into JSONPath nodes)."""
    path = node.expression
    text = path.name if isinstance(path, exp.Literal) else path.sql("trino")
    return text[1:-1] if len(text) > 1 and text[0] == text[-1] == "'" else text
