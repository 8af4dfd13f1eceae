"""The allow-list: every Trino function and construct the embedded engine runs, each with how it
translates. Whatever is not here is refused by name. Every entry is checked against pandas by
tests/test_sql_conformance.py: add one only together with a conformance case."""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from . import rewrites as r
from .casts import cast
from .java_format import constant_format, format_call


@dataclass(frozen=True)
class Rule:
    """How one supported function or construct translates. `name`: Trino's name of a function,
    for messages; `checks`: refuse argument forms not translated exactly; `rewrite`: the DuckDB
    form where DuckDB's built-in differs; `typed`: the rewrite reads sqlglot's types, so the query
    is annotated first (costly: only when needed)."""

    name: str = ""
    checks: tuple[r.Check, ...] = ()
    rewrite: r.Rewrite | None = None
    typed: bool = False


_DATE_UNITS = (r.unit_in(r.DATE_UNITS),)
_ADD_UNITS = (r.unit_in(r.ADD_UNITS),)

FUNCTIONS: dict[type[exp.Expression], Rule] = {
    # aggregates
    exp.Count: Rule("count"),
    exp.Sum: Rule("sum"),
    exp.Avg: Rule("avg", rewrite=r.avg, typed=True),
    exp.Min: Rule("min"),
    exp.Max: Rule("max"),
    exp.CountIf: Rule("count_if", rewrite=r.count_if),
    exp.ApproxDistinct: Rule("approx_distinct", rewrite=r.approx_distinct),
    exp.ApproxQuantile: Rule(
        "approx_percentile",
        checks=(
            r.without("weight", "the weighted form"),
            r.without("accuracy", "an accuracy argument"),
        ),
        rewrite=r.approx_percentile,
        typed=True,
    ),
    exp.Stddev: Rule("stddev"),
    exp.StddevSamp: Rule("stddev_samp"),
    exp.StddevPop: Rule("stddev_pop"),
    exp.Variance: Rule("variance"),
    exp.VariancePop: Rule("var_pop"),
    exp.LogicalAnd: Rule("bool_and"),
    exp.LogicalOr: Rule("bool_or"),
    exp.Corr: Rule("corr"),
    # DuckDB's arg_max skips a NULL x of the maximal row; Trino returns it
    exp.ArgMax: Rule(
        "max_by",
        checks=(r.without("count", "the form with a count"),),
        rewrite=r.as_duckdb("arg_max_null", "this", "expression"),
    ),
    exp.ArgMin: Rule(
        "min_by",
        checks=(r.without("count", "the form with a count"),),
        rewrite=r.as_duckdb("arg_min_null", "this", "expression"),
    ),
    exp.ArrayAgg: Rule("array_agg"),
    # window functions
    exp.RowNumber: Rule("row_number"),
    exp.Rank: Rule("rank"),
    exp.DenseRank: Rule("dense_rank"),
    exp.Ntile: Rule("ntile"),
    exp.PercentRank: Rule("percent_rank"),
    exp.CumeDist: Rule("cume_dist"),
    exp.Lag: Rule("lag"),
    exp.Lead: Rule("lead"),
    exp.FirstValue: Rule("first_value"),
    exp.LastValue: Rule("last_value"),
    # numbers
    exp.Abs: Rule("abs"),
    exp.Ceil: Rule("ceil"),
    exp.Floor: Rule("floor"),
    exp.Round: Rule("round", checks=(r.constant_digits,)),
    exp.Sqrt: Rule("sqrt"),
    exp.Pow: Rule("power"),
    exp.Ln: Rule("ln"),
    exp.Exp: Rule("exp"),
    exp.Greatest: Rule("greatest"),
    exp.Least: Rule("least"),
    # strings
    exp.Lower: Rule("lower"),
    exp.Upper: Rule("upper"),
    exp.Length: Rule("length"),
    exp.Substring: Rule("substr"),
    exp.Replace: Rule("replace"),
    exp.Concat: Rule("concat"),
    exp.StrPosition: Rule("strpos"),
    exp.StartsWith: Rule("starts_with"),
    exp.Split: Rule("split", checks=(r.without("limit", "a limit"),)),
    exp.Format: Rule("format", checks=(constant_format,), rewrite=format_call, typed=True),
    exp.JSONExtractScalar: Rule(
        "json_extract_scalar",
        checks=(r.simple_json_path,),
        rewrite=r.json_extract_scalar,
        typed=True,
    ),
    # dates and times
    exp.TimestampTrunc: Rule(
        "date_trunc", checks=_ADD_UNITS, rewrite=r.date_stays_date, typed=True
    ),
    exp.DateAdd: Rule("date_add", checks=_ADD_UNITS, rewrite=r.date_stays_date, typed=True),
    exp.DateDiff: Rule("date_diff", checks=_DATE_UNITS, rewrite=r.date_diff),
    exp.Year: Rule("year"),
    exp.Quarter: Rule("quarter"),
    exp.Month: Rule("month"),
    exp.WeekOfYear: Rule("week"),
    exp.Day: Rule("day"),
    exp.DayOfMonth: Rule("day_of_month"),
    exp.DayOfWeekIso: Rule("day_of_week", rewrite=r.as_duckdb("isodow", "this")),
    exp.DayOfYear: Rule("day_of_year"),
    exp.Hour: Rule("hour"),
    exp.Minute: Rule("minute"),
    exp.Extract: Rule("extract", checks=(r.known_field,), rewrite=r.extract),
    exp.Date: Rule("date"),
    exp.TimeToStr: Rule("date_format", checks=(r.printable_date_format,)),
    exp.TimeToUnix: Rule("to_unixtime"),
    exp.CurrentDate: Rule("current_date"),
    # conditionals, casts, arrays
    exp.Case: Rule("case"),
    exp.If: Rule("if"),
    exp.Coalesce: Rule("coalesce"),
    exp.Nullif: Rule("nullif"),
    exp.Cast: Rule("cast", rewrite=cast, typed=True),
    exp.TryCast: Rule("try_cast", rewrite=cast, typed=True),
    exp.Array: Rule("array"),
    exp.Unnest: Rule("unnest", checks=(r.single_array,)),
    exp.ArraySize: Rule("cardinality"),
    exp.Bracket: Rule("element_at", checks=(r.safe_subscript,)),
}

_SAME_IN_DUCKDB = (
    exp.Select,
    exp.Union,
    exp.Except,
    exp.Intersect,
    exp.Subquery,
    exp.With,
    exp.CTE,
    exp.TableAlias,
    exp.Table,
    exp.From,
    exp.Join,
    exp.Where,
    exp.Group,
    exp.Having,
    exp.Order,
    exp.Ordered,
    exp.Limit,
    exp.Offset,
    exp.Alias,
    exp.Column,
    exp.Identifier,
    exp.Star,
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Paren,
    exp.Neg,
    exp.Not,
    exp.And,
    exp.Or,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Is,
    exp.In,
    exp.Between,
    exp.Like,
    exp.NullSafeEQ,
    exp.NullSafeNEQ,
    exp.Mul,
    exp.DPipe,
    exp.Window,
    exp.WindowSpec,
    exp.Distinct,
    exp.DataType,
    exp.DataTypeParam,
    exp.Var,
    exp.Values,
    exp.Tuple,
    exp.Filter,
    exp.Exists,
    exp.JSONPath,
    exp.JSONPathRoot,
    exp.JSONPathKey,
    exp.JSONPathSubscript,
)
CONSTRUCTS: dict[type[exp.Expression], Rule] = {
    **dict.fromkeys(_SAME_IN_DUCKDB, Rule()),
    exp.Div: Rule(rewrite=r.division, typed=True),
    exp.Mod: Rule(rewrite=r.division, typed=True),
    exp.Add: Rule(rewrite=r.date_arithmetic),  # typed whenever it adds an interval
    exp.Sub: Rule(rewrite=r.date_arithmetic, typed=True),
    exp.Interval: Rule(typed=True),  # date + interval stays a date: see date_arithmetic
}
# How refusals name the unsupported constructs users meet most.
UNSUPPORTED_CONSTRUCTS = {
    "TableSample": "TABLESAMPLE",
    "AtTimeZone": "AT TIME ZONE",
    "Rollup": "GROUP BY ROLLUP",
    "Cube": "GROUP BY CUBE",
    "GroupingSets": "GROUP BY GROUPING SETS",
    "Lambda": "a lambda expression",
    "Dot": "row field access",
    "Placeholder": "a query parameter",
    "Lateral": "LATERAL",
    "Pivot": "PIVOT",
    "Qualify": "QUALIFY",
    "MatchRecognize": "MATCH_RECOGNIZE",
}


def rule_of(node: exp.Expression) -> Rule | None:
    """The rule of a supported function or construct, None for anything else."""
    return FUNCTIONS.get(type(node)) or CONSTRUCTS.get(type(node))


def function_name(node: exp.Expression) -> str:
    """The Trino name of a function node, for messages."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    rule = FUNCTIONS.get(type(node))
    return rule.name if rule else (node.sql_name() or node.key).lower()
