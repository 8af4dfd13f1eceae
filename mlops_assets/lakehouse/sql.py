"""Analyst SQL in Trino's dialect: on Trino in prod; in the embedded profile on DuckDB, with the
Iceberg extension shipped on PyPI reading the same Iceberg tables and sqlglot translating the SQL.
Tables are named as Trino names them: iceberg.<namespace>.<table>.

The embedded engine answers a query exactly as Trino would, or refuses it; it never gives a different
answer. The query is parsed with sqlglot's Trino dialect and every function and construct in it must
be on an allow-list (`_allow_lists`) whose DuckDB translation is checked against pandas
by tests/test_sql_conformance.py; anything else is a `QueryError` that names it. Where DuckDB's
built-in differs from Trino the translation is explicit:

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
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from typing import TYPE_CHECKING, Any

from mlops_assets.settings import Environment, Settings

if TYPE_CHECKING:
    import pandas as pd
    from sqlglot import exp as sqlglot_exp

TRINO_CATALOG = "iceberg"


class QueryError(ValueError):
    pass


def _refuse_function(name: str, why: str = "") -> QueryError:
    detail = f" ({why})" if why else ""
    return QueryError(
        f"function {name}() has no exact equivalent in the embedded engine{detail}; run it on Trino"
    )


def _refuse(what: str, why: str = "") -> QueryError:
    detail = f" ({why})" if why else ""
    return QueryError(f"{what} is not supported by the embedded engine{detail}; run it on Trino")


# -- the catalog ---------------------------------------------------------------------------------


class _Tables:
    """The Iceberg tables of the catalog by (schema, table), each loaded when first needed (a
    query loads only the tables it names)."""

    def __init__(self, catalog: Any, identifiers: dict[tuple[str, str], Any], schemas: list[str]):
        self._catalog = catalog
        self._identifiers = identifiers
        self._loaded: dict[tuple[str, str], Any] = {}
        self.schemas = schemas

    @classmethod
    def load(cls, settings: Settings) -> _Tables:
        from mlops_assets.lakehouse.catalog import catalog

        cat = catalog(settings)
        identifiers, schemas = {}, []
        for namespace in cat.list_namespaces():
            schema = ".".join(namespace)
            schemas.append(schema)
            for identifier in cat.list_tables(namespace):
                identifiers[(schema, identifier[-1])] = identifier
        return cls(cat, identifiers, schemas)

    @classmethod
    def empty(cls) -> _Tables:
        return cls(None, {}, [])

    def names(self) -> set[tuple[str, str]]:
        return set(self._identifiers)

    def get(self, key: tuple[str, str]) -> Any:
        if key not in self._identifiers:
            return None
        if key not in self._loaded:
            self._loaded[key] = self._catalog.load_table(self._identifiers[key])
        return self._loaded[key]

    def sqlglot_schema(self, used: set[tuple[str, str]]) -> Any:
        """sqlglot's schema of the tables a query uses, in Trino type names; decimals without
        precision so that sqlglot's coercion lets double win over decimal, as Trino does."""
        from sqlglot.schema import MappingSchema

        out: dict[str, Any] = {}
        for key in sorted(used & self.names()):
            columns = {
                f.name.lower(): re.sub(r"^decimal\(.*\)$", "decimal", trino_type(f.field_type))
                for f in self.get(key).schema().fields
            }
            out.setdefault(key[0], {})[key[1]] = columns
        # Names are already normalized (Trino lowercases identifiers): no re-parsing of each.
        return MappingSchema({TRINO_CATALOG: out} if out else {}, dialect="trino", normalize=False)


def trino_type(iceberg_type: Any) -> str:
    """The Trino type name of an Iceberg type (as Trino's Iceberg connector maps it)."""
    from pyiceberg import types as t

    simple = {
        t.BooleanType: "boolean",
        t.IntegerType: "integer",
        t.LongType: "bigint",
        t.FloatType: "real",
        t.DoubleType: "double",
        t.DateType: "date",
        t.TimeType: "time(6)",
        t.TimestampType: "timestamp(6)",
        t.TimestamptzType: "timestamp(6) with time zone",
        t.StringType: "varchar",
        t.UUIDType: "uuid",
        t.BinaryType: "varbinary",
        t.FixedType: "varbinary",
    }
    for kind, name in simple.items():
        if isinstance(iceberg_type, kind):
            return name
    if isinstance(iceberg_type, t.DecimalType):
        return f"decimal({iceberg_type.precision}, {iceberg_type.scale})"
    if isinstance(iceberg_type, t.ListType):
        return f"array({trino_type(iceberg_type.element_type)})"
    if isinstance(iceberg_type, t.MapType):
        return f"map({trino_type(iceberg_type.key_type)}, {trino_type(iceberg_type.value_type)})"
    if isinstance(iceberg_type, t.StructType):
        fields = ", ".join(f'"{f.name}" {trino_type(f.field_type)}' for f in iceberg_type.fields)
        return f"row({fields})"
    return str(iceberg_type)


# -- SHOW / DESCRIBE -----------------------------------------------------------------------------

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


def _parts(name: str) -> list[str]:
    """Identifier parts as Trino resolves them (case-insensitive, quotes removed)."""
    parts = re.findall(r'"((?:[^"]|"")+)"|([\w$]+)', name)
    return [(quoted.replace('""', '"') or bare).lower() for quoted, bare in parts]


def _like(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    pattern = pattern.replace("''", "'")
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(rf"^{regex}$", re.S)


def metadata_query(sql: str, tables: _Tables) -> Any:
    """The answer to SHOW SCHEMAS / SHOW TABLES / SHOW COLUMNS / DESCRIBE, or None if `sql` is
    none of them."""
    import pandas as pd

    def catalog_tables() -> _Tables:
        return tables

    if match := _SHOW_SCHEMAS.match(sql):
        parts = _parts(match["name"] or TRINO_CATALOG)
        if parts != [TRINO_CATALOG]:
            raise QueryError(f"Catalog '{'.'.join(parts)}' does not exist")
        like = _like(match["like"])
        names = sorted({*catalog_tables().schemas, "information_schema"})
        return pd.DataFrame({"Schema": [n for n in names if like is None or like.match(n)]})
    if match := _SHOW_TABLES.match(sql):
        if not match["name"]:
            raise QueryError("Schema must be specified when session schema is not set")
        parts = _parts(match["name"])
        if len(parts) == 2 and parts[0] != TRINO_CATALOG:
            raise QueryError(f"Catalog '{parts[0]}' does not exist")
        if len(parts) not in (1, 2):
            raise QueryError(f"Too many parts in schema name: {match['name']}")
        schema = parts[-1]
        loaded = catalog_tables()
        if schema not in loaded.schemas:
            raise QueryError(f"Schema '{schema}' does not exist")
        like = _like(match["like"])
        names = sorted(t for s, t in loaded.names() if s == schema)
        return pd.DataFrame({"Table": [n for n in names if like is None or like.match(n)]})
    if match := _SHOW_COLUMNS.match(sql):
        parts = _parts(match["name"])
        if len(parts) == 3 and parts[0] == TRINO_CATALOG:
            parts = parts[1:]
        if len(parts) != 2:
            raise QueryError(
                f"Table '{match['name']}' does not exist (name it iceberg.<schema>.<table>)"
            )
        table = catalog_tables().get((parts[0], parts[1]))
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
    if match := _SHOW_OTHER.match(sql):
        raise _refuse(" ".join(match[1].upper().split()))
    return None


# -- the supported subset ------------------------------------------------------------------------


@functools.cache
def _allow_lists() -> tuple[dict[type, str], set[type]]:
    from sqlglot import exp

    functions = {
        # aggregates
        exp.Count: "count",
        exp.Sum: "sum",
        exp.Avg: "avg",
        exp.Min: "min",
        exp.Max: "max",
        exp.CountIf: "count_if",
        exp.ApproxDistinct: "approx_distinct",
        exp.ApproxQuantile: "approx_percentile",
        exp.Stddev: "stddev",
        exp.StddevSamp: "stddev_samp",
        exp.StddevPop: "stddev_pop",
        exp.Variance: "variance",
        exp.VariancePop: "var_pop",
        exp.LogicalAnd: "bool_and",
        exp.LogicalOr: "bool_or",
        exp.Corr: "corr",
        exp.ArgMax: "max_by",
        exp.ArgMin: "min_by",
        exp.ArrayAgg: "array_agg",
        # window functions
        exp.RowNumber: "row_number",
        exp.Rank: "rank",
        exp.DenseRank: "dense_rank",
        exp.Ntile: "ntile",
        exp.PercentRank: "percent_rank",
        exp.CumeDist: "cume_dist",
        exp.Lag: "lag",
        exp.Lead: "lead",
        exp.FirstValue: "first_value",
        exp.LastValue: "last_value",
        # numbers
        exp.Abs: "abs",
        exp.Ceil: "ceil",
        exp.Floor: "floor",
        exp.Round: "round",
        exp.Sqrt: "sqrt",
        exp.Pow: "power",
        exp.Ln: "ln",
        exp.Exp: "exp",
        exp.Greatest: "greatest",
        exp.Least: "least",
        # strings
        exp.Lower: "lower",
        exp.Upper: "upper",
        exp.Length: "length",
        exp.Substring: "substr",
        exp.Replace: "replace",
        exp.Concat: "concat",
        exp.StrPosition: "strpos",
        exp.StartsWith: "starts_with",
        exp.Split: "split",
        exp.Format: "format",
        exp.JSONExtractScalar: "json_extract_scalar",
        # dates and times
        exp.TimestampTrunc: "date_trunc",
        exp.DateAdd: "date_add",
        exp.DateDiff: "date_diff",
        exp.Year: "year",
        exp.Quarter: "quarter",
        exp.Month: "month",
        exp.WeekOfYear: "week",
        exp.Day: "day",
        exp.DayOfMonth: "day_of_month",
        exp.DayOfWeekIso: "day_of_week",
        exp.DayOfYear: "day_of_year",
        exp.Hour: "hour",
        exp.Minute: "minute",
        exp.Extract: "extract",
        exp.Date: "date",
        exp.TimeToStr: "date_format",
        exp.TimeToUnix: "to_unixtime",
        exp.CurrentDate: "current_date",
        # conditionals, casts, arrays
        exp.Case: "case",
        exp.If: "if",
        exp.Coalesce: "coalesce",
        exp.Nullif: "nullif",
        exp.Cast: "cast",
        exp.TryCast: "try_cast",
        exp.Array: "array",
        exp.Unnest: "unnest",
        exp.ArraySize: "cardinality",
        exp.Bracket: "element_at",
    }
    constructs = {
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
        exp.Add,
        exp.Sub,
        exp.Mul,
        exp.Div,
        exp.Mod,
        exp.DPipe,
        exp.Window,
        exp.WindowSpec,
        exp.Distinct,
        exp.DataType,
        exp.DataTypeParam,
        exp.Interval,
        exp.Var,
        exp.Values,
        exp.Tuple,
        exp.Filter,
        exp.Exists,
        exp.JSONPath,
        exp.JSONPathRoot,
        exp.JSONPathKey,
        exp.JSONPathSubscript,
    }
    return functions, constructs


_CONSTRUCT_NAMES = {
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
    "Command": None,  # EXPLAIN, CALL, PREPARE, ...: named by their first word
}
_DATE_UNITS = {"millisecond", "second", "minute", "hour", "day", "week"}
_ADD_UNITS = _DATE_UNITS | {"month", "quarter", "year"}
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
# print what Trino prints.
_STRFTIME_OK = {*"YymdHIMSfpjaAbB%", "-m", "-d", "-H", "-I"}
_JSON_PATH = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*$")
_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INT", "BIGINT"}
_FLOAT_TYPES = {"DOUBLE", "FLOAT"}


def _function_name(node: Any) -> str:
    """The Trino name of a function node, for messages."""
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    functions, _ = _allow_lists()
    return functions.get(type(node)) or (node.sql_name() or node.key).lower()


# -- translation ---------------------------------------------------------------------------------


def parse_one(sql: str) -> sqlglot_exp.Expression:
    """One Trino statement, checked to be a read."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)  # sqlglot warns on syntax it falls back on: refused below
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


def _check_allowed(tree: Any) -> None:
    from sqlglot import exp

    functions, constructs = _allow_lists()
    for node in tree.walk():
        kind = type(node)
        if kind in functions or kind in constructs:
            continue
        if isinstance(node, exp.Func):
            raise _refuse_function(_function_name(node))
        raise _refuse(_CONSTRUCT_NAMES.get(kind.__name__, f"the construct {kind.__name__}"))


def _check_arguments(tree: Any) -> None:
    """Argument shapes whose translation is not exact."""
    from sqlglot import exp

    for node in tree.walk():
        if isinstance(node, exp.ApproxQuantile) and node.args.get("weight") is not None:
            raise _refuse_function("approx_percentile", "the weighted form")
        if isinstance(node, exp.ApproxQuantile) and node.args.get("accuracy") is not None:
            raise _refuse_function("approx_percentile", "an accuracy argument")
        if isinstance(node, exp.ArgMax | exp.ArgMin) and node.args.get("count") is not None:
            raise _refuse_function(_function_name(node), "the form with a count")
        if isinstance(node, exp.Bracket) and not node.args.get("safe"):
            raise _refuse("the subscript a[i]", "Trino fails out of range; use element_at(a, i)")
        if isinstance(node, exp.Unnest) and (len(node.expressions) != 1 or node.args.get("offset")):
            raise _refuse("UNNEST of several arrays or WITH ORDINALITY")
        if isinstance(node, exp.DateDiff | exp.DateAdd | exp.TimestampTrunc):
            unit = str(node.unit.name if node.unit else "day").lower()
            allowed = _DATE_UNITS if isinstance(node, exp.DateDiff) else _ADD_UNITS
            if unit not in allowed:
                raise _refuse_function(_function_name(node), f"unit '{unit}'")
        if isinstance(node, exp.Extract) and node.name.upper() not in _EXTRACT:
            raise _refuse_function("extract", f"field {node.name.upper()}")
        if isinstance(node, exp.TimeToStr):
            fmt = node.args.get("format")
            if not isinstance(fmt, exp.Literal) or not fmt.is_string:
                raise _refuse_function("date_format", "a non-constant format")
            if isinstance(node.args.get("zone"), exp.Expression):
                raise _refuse_function("date_format", "a time zone argument")
        if isinstance(node, exp.JSONExtractScalar):
            path = node.expression
            if not isinstance(path, exp.JSONPath | exp.Literal):
                raise _refuse_function("json_extract_scalar", "a non-constant path")
        if isinstance(node, exp.Format):
            fmt = node.this
            if not isinstance(fmt, exp.Literal) or not fmt.is_string:
                raise _refuse_function("format", "a non-constant format string")
        digits = node.args.get("decimals") if isinstance(node, exp.Round) else None
        if digits is not None and not isinstance(digits, exp.Literal | exp.Neg):
            raise _refuse_function("round", "non-constant digits")
        if isinstance(node, exp.Split) and node.args.get("limit") is not None:
            raise _refuse_function("split", "a limit")


def _type_name(node: Any) -> str:
    """The sqlglot type of an annotated node: INT, BIGINT, DOUBLE, DECIMAL, VARCHAR, DATE, ... or
    UNKNOWN."""
    from sqlglot import exp

    kind = node.type.this if node.type is not None else exp.DataType.Type.UNKNOWN
    name = kind.name if hasattr(kind, "name") else str(kind)
    return {"TEXT": "VARCHAR", "CHAR": "VARCHAR", "NCHAR": "VARCHAR", "NVARCHAR": "VARCHAR"}.get(
        name, name
    )


def _used_tables(tree: Any) -> set[tuple[str, str]]:
    from sqlglot import exp

    return {
        (t.db.lower(), t.name.lower())
        for t in tree.find_all(exp.Table)
        if t.catalog.lower() == TRINO_CATALOG
    }


def _has_decimal_source(tree: Any, tables: _Tables) -> bool:
    from sqlglot import exp

    for node in tree.walk():
        if isinstance(node, exp.Literal) and not node.is_string and _is_decimal_literal(node):
            return True
        if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.DECIMAL:
            return True
    return any(
        "decimal" in trino_type(f.field_type)
        for key in _used_tables(tree) & tables.names()
        for f in tables.get(key).schema().fields
    )


def _is_decimal_literal(node: Any) -> bool:
    text = str(node.this)
    return "." in text and "e" not in text.lower()


_NEEDS_TYPES = (
    "Sub",
    "Div",
    "Mod",
    "Avg",
    "Cast",
    "TryCast",
    "Format",
    "ApproxQuantile",
    "DateAdd",
    "Interval",
    "TimestampTrunc",
    "JSONExtractScalar",
)


def _annotate(tree: Any, tables: _Tables) -> Any:
    """Qualify and type the tree with sqlglot. Decimal literals and decimal casts are typed as
    an unparameterized DECIMAL for the annotation only (so double wins over decimal in coercion,
    as in Trino); the original nodes are put back, keeping their types."""
    from sqlglot import exp
    from sqlglot.errors import OptimizeError, SchemaError
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlglot.optimizer.qualify import qualify

    swapped: list[tuple[Any, Any]] = []
    for node in list(tree.walk()):
        if isinstance(node, exp.Literal) and not node.is_string and _is_decimal_literal(node):
            stand_in = exp.Cast(this=node.copy(), to=exp.DataType.build("DECIMAL"))
            node.replace(stand_in)
            swapped.append((stand_in, node))
        elif (
            isinstance(node, exp.DataType)
            and node.this == exp.DataType.Type.DECIMAL
            and node.expressions
        ):
            stand_in = exp.DataType.build("DECIMAL")
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


def translate(sql: str, tables: _Tables | None = None) -> str:
    """Trino SQL -> DuckDB SQL with Trino's semantics, or QueryError."""
    return _translate(sql, tables or _Tables.empty())[0]


def _translate(sql: str, tables: _Tables) -> tuple[str, set[tuple[str, str]]]:
    """The DuckDB SQL and the (schema, table) pairs it reads."""
    from sqlglot import exp
    from sqlglot.errors import ErrorLevel, UnsupportedError

    tree = parse_one(sql)
    _check_allowed(tree)
    _check_arguments(tree)
    _qualify_table_names(tree)
    used = _used_tables(tree)
    if tree.find(exp.Bracket) and any(
        "map(" in trino_type(f.field_type)
        for key in used & tables.names()
        for f in tables.get(key).schema().fields
    ):
        raise _refuse_function("element_at", "on a table with map columns")
    _name_columns_like_trino(tree)
    decimals = _has_decimal_source(tree, tables)
    typed = any(type(n).__name__ in _NEEDS_TYPES for n in tree.walk())
    if typed:
        tree = _annotate(tree, tables)
    _rewrite(tree, typed, decimals)
    try:
        return tree.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE), used
    except UnsupportedError as err:
        raise _refuse(f"part of this query ({err})") from None


def _qualify_table_names(tree: Any) -> None:
    """schema.table means iceberg.schema.table (Trino's session catalog is iceberg)."""
    from sqlglot import exp

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


def _name_columns_like_trino(tree: Any) -> None:
    """Unnamed result columns are _col0, _col1, ... (by position), as Trino names them."""
    from sqlglot import exp

    for select in tree.find_all(exp.Select):
        for i, expression in enumerate(select.expressions):
            if isinstance(expression, exp.Alias | exp.Column | exp.Star):
                continue
            expression.replace(exp.alias_(expression.copy(), f"_col{i}", quoted=True))


def _rewrite(tree: Any, typed: bool, decimals: bool) -> None:
    """Replace what DuckDB computes differently, children before parents."""
    from sqlglot import exp

    for node in reversed(list(tree.walk())):
        if node.parent is None and node is not tree:
            continue
        new = _rewrite_node(node, typed, decimals)
        if new is not None and new is not node:
            if new.type is None or new.type.this == exp.DataType.Type.UNKNOWN:
                new.type = node.type  # parents still look at this node's type
            node.replace(new)


def _duck(name: str, *args: Any) -> Any:
    from sqlglot import exp

    return exp.Anonymous(this=name, expressions=list(args))


def _error(message: str) -> Any:
    from sqlglot import exp

    return _duck("error", exp.Literal.string(message))


def _rewrite_node(node: Any, typed: bool, decimals: bool) -> Any:
    from sqlglot import exp

    if isinstance(node, exp.Div | exp.Mod):
        name = "division" if isinstance(node, exp.Div) else "modulus"
        if decimals:
            kinds = {_type_name(node.this), _type_name(node.expression)}
            if "DECIMAL" in kinds:
                raise _refuse(
                    f"{name} of decimal values",
                    "Trino rounds the result to the operands' scale, e.g. 1.0 / 3 = 0.3; "
                    "cast an operand to double",
                )
            if "UNKNOWN" in kinds:
                raise _refuse(f"{name} of values whose type cannot be determined")
        macro = "trino_divide" if isinstance(node, exp.Div) else "trino_modulus"
        return _duck(macro, node.this, node.expression)
    if isinstance(node, exp.Avg) and decimals:
        kind = _type_name(node.this)
        if kind == "DECIMAL":
            raise _refuse_function(
                "avg",
                "Trino's avg of a decimal is rounded to the decimal's scale, e.g. "
                "avg(1.0, 0.0, 0.0) = 0.3; cast the argument to double",
            )
        if kind == "UNKNOWN":
            raise _refuse_function("avg", "the argument's type cannot be determined")
        return None
    if isinstance(node, exp.ApproxDistinct):
        count = exp.Count(this=exp.Distinct(expressions=[node.this]))
        return exp.cast(count, "BIGINT")
    if isinstance(node, exp.ApproxQuantile):
        quantile = node.args["quantile"]
        result = _duck("quantile_disc", node.this, quantile)
        if _type_name(node.this) in _INTEGER_TYPES:  # Trino's integer percentiles are bigint
            bigint = "BIGINT[]" if isinstance(quantile, exp.Array) else "BIGINT"
            result = exp.cast(result, exp.DataType.build(bigint, dialect="duckdb"))
        return result
    if isinstance(node, exp.DateDiff):
        unit = str(node.unit.name if node.unit else "day").lower()
        return _duck("date_sub", exp.Literal.string(unit), node.expression, node.this)
    if isinstance(node, exp.ArgMax | exp.ArgMin):
        name = "arg_max_null" if isinstance(node, exp.ArgMax) else "arg_min_null"
        return _duck(name, node.this, node.expression)
    if isinstance(node, exp.DayOfWeekIso):
        return _duck("isodow", node.this)
    if isinstance(node, exp.Extract):
        return _duck(_EXTRACT[node.name.upper()], node.expression)
    if isinstance(node, exp.TimeToStr):
        return _date_format(node)
    if isinstance(node, exp.TimestampTrunc | exp.DateAdd):
        if _type_name(node.this) == "DATE":
            return exp.cast(node.copy(), "DATE")
        return None
    if isinstance(node, exp.Add | exp.Sub) and typed:
        left, right = _type_name(node.this), _type_name(node.expression)
        if isinstance(node.expression, exp.Interval) and left == "DATE":
            return exp.cast(node.copy(), "DATE")
        if isinstance(node.this, exp.Interval) and right == "DATE":
            return exp.cast(node.copy(), "DATE")
        if isinstance(node, exp.Sub) and left == right == "DATE":
            raise _refuse("date - date", "Trino has no such operator; use date_diff('day', a, b)")
        return None
    if isinstance(node, exp.Cast | exp.TryCast):
        return _cast(node)
    if isinstance(node, exp.Format):
        return _format(node)
    if isinstance(node, exp.JSONExtractScalar):
        return _json_extract_scalar(node)
    return None


def _date_format(node: Any) -> Any:
    """sqlglot maps Trino's (MySQL) specifiers to strftime ones; only those whose strftime
    counterpart prints the same are kept (%D, %U, %u, %V, %w, %X, %x are refused)."""
    pattern = node.args["format"].name
    bad = [s for s in re.findall(r"%(-?.)", pattern) if s not in _STRFTIME_OK]
    if bad:
        raise _refuse_function("date_format", f"specifier %{bad[0].lstrip('-')}")
    return None


# CAST: target kind -> the source types whose DuckDB cast gives Trino's answer unchanged.
_CAST_ALIKE = {
    "INTEGER": {*_INTEGER_TYPES, "DECIMAL", "BOOLEAN", "NULL"},
    "DOUBLE": {*_INTEGER_TYPES, *_FLOAT_TYPES, "DECIMAL", "VARCHAR", "BOOLEAN", "NULL"},
    "VARCHAR": {*_INTEGER_TYPES, "VARCHAR", "BOOLEAN", "DATE", "DECIMAL", "NULL"},
    "DATE": {"VARCHAR", "DATE", "TIMESTAMP", "TIMESTAMPTZ", "NULL"},
    "TIMESTAMP": {"DATE", "NULL"},
    "DECIMAL": {*_INTEGER_TYPES, "DECIMAL", "NULL"},
    "BOOLEAN": {*_INTEGER_TYPES, "BOOLEAN", "NULL"},
}


def _cast_target(target: Any) -> str:
    from sqlglot import exp

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


_ISO_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?( UTC|Z|[+-]00:00)?$"
)
_PLAIN_DECIMAL = re.compile(r"^[+-]?\d+(\.\d*)?$")


def _typed_literal(value: Any, kind: str) -> bool:
    """A constant string whose Trino literal reads the same in DuckDB."""
    from sqlglot import exp

    if not (isinstance(value, exp.Literal) and value.is_string):
        return False
    if kind == "DECIMAL":
        return bool(_PLAIN_DECIMAL.match(value.name))
    if kind in ("TIMESTAMP", "TIMESTAMP(6)"):
        return bool(_ISO_TIMESTAMP.match(value.name))
    return False


def _cast(node: Any) -> Any:
    """Trino's CAST where DuckDB's differs; a cast not known to agree is refused."""
    from sqlglot import exp

    target, value = node.to, node.this
    source = "NULL" if isinstance(value, exp.Null) else _type_name(value)
    name = "try_cast" if isinstance(node, exp.TryCast) else "cast"
    target_sql = target.sql("trino").lower()
    kind = _cast_target(target)
    if source == "UNKNOWN":
        raise _refuse_function(name, f"to {target_sql} of a value whose type cannot be determined")
    if kind == "TIMESTAMP(6)":
        kind, source = "TIMESTAMP", "DATE" if source in {"TIMESTAMP", "TIMESTAMPTZ"} else source
    if source in _CAST_ALIKE.get(kind, set()):
        return None
    if _typed_literal(value, kind):
        return None  # DECIMAL '2.5', TIMESTAMP '2025-03-01 10:00:00 UTC
    not_null = exp.Not(this=exp.Is(this=value, expression=exp.Null()))
    if kind == "INTEGER" and source in _FLOAT_TYPES:
        # Trino rounds half away from zero; DuckDB's cast rounds half to even.
        return node.__class__(this=exp.Round(this=value), to=target)
    if kind == "INTEGER" and source == "VARCHAR":
        # Trino accepts only an optionally signed integer ('1.5', ' 7', '1e2' fail).
        valid = _duck("regexp_full_match", value, exp.Literal.string(r"[+-]?[0-9]+"))
        cast = exp.case().when(valid, node.__class__(this=value, to=target))
        if name == "try_cast":
            return cast
        return cast.when(not_null, _error(f"Cannot cast a non-integer varchar to {target_sql}"))
    if kind == "VARCHAR" and source == "DOUBLE":
        # Java's Double.toString: plain between 1e-3 and 1e7 (as DuckDB prints it), else
        # scientific ("1.0E7"), which DuckDB does not print.
        magnitude = exp.Abs(this=value)
        plain = exp.or_(
            exp.EQ(this=value, expression=exp.Literal.number(0)),
            exp.and_(
                exp.GTE(this=magnitude, expression=exp.Literal.number("1e-3")),
                exp.LT(this=magnitude, expression=exp.Literal.number("1e7")),
            ),
        )
        outside = _error(
            f"{name}(double AS varchar) of a value outside [0.001, 1e7) prints in Java's "
            "scientific notation in Trino; use format()"
        )
        return exp.case().when(plain, node.__class__(this=value, to=target)).when(not_null, outside)
    raise _refuse_function(name, f"from {source.lower()} to {target_sql}")


_FORMAT_SPEC = re.compile(
    r"%(?P<index>\d+\$)?(?P<flags>[-#+ 0,(<]*)(?P<width>\d+)?(?:\.(?P<precision>\d+))?(?P<conversion>[a-zA-Z%])"
)


def _format(node: Any) -> Any:
    """format(fmt, args...) with Java's formatting, as string building."""
    from sqlglot import exp

    pattern = node.this.name
    args = list(node.expressions)
    pieces: list[Any] = []
    position = 0
    used = 0
    for match in _FORMAT_SPEC.finditer(pattern):
        if match.start() > position:
            pieces.append(exp.Literal.string(pattern[position : match.start()]))
        position = match.end()
        spec = match.group(0)
        conversion, flags = match["conversion"], match["flags"]
        width, precision = match["width"], match["precision"]
        if conversion == "%":
            if flags or width or precision or match["index"]:
                raise _refuse_function("format", f"specifier {spec}")
            pieces.append(exp.Literal.string("%"))
            continue
        if match["index"] or conversion not in "sdf":
            raise _refuse_function("format", f"specifier {spec}")
        if used >= len(args):
            raise _refuse_function("format", f"no argument for {spec}")
        arg = args[used]
        used += 1
        kind = _type_name(arg)
        allowed_flags = {"s": "-", "d": "-0", "f": "-"}[conversion]
        if any(f not in allowed_flags for f in flags) or ("-" in flags and "0" in flags):
            raise _refuse_function("format", f"flags of {spec}")
        if (flags and not width) or (conversion == "d" and precision):
            raise _refuse_function("format", f"specifier {spec}")
        pad = f"%{'-' if '-' in flags else ''}{width or ''}s"
        if conversion == "s":
            if kind not in _INTEGER_TYPES | {"VARCHAR", "BOOLEAN", "DATE"}:
                raise _refuse_function("format", f"{spec} of a {kind.lower()} value")
            text = exp.Coalesce(
                this=exp.cast(arg, "VARCHAR"), expressions=[exp.Literal.string("null")]
            )
            shown = f"%{'-' if '-' in flags else ''}{width or ''}{'.' + precision if precision else ''}s"
            pieces.append(_duck("printf", exp.Literal.string(shown), text))
        elif conversion == "d":
            if kind not in _INTEGER_TYPES:
                raise _refuse_function("format", f"{spec} of a {kind.lower()} value")
            number = _duck("printf", exp.Literal.string(spec), arg)
            missing = _duck("printf", exp.Literal.string(pad), exp.Literal.string("null"))
            pieces.append(exp.Coalesce(this=number, expressions=[missing]))
        else:
            if kind not in {"DOUBLE", "DECIMAL"}:
                raise _refuse_function("format", f"{spec} of a {kind.lower()} value")
            digits = int(precision) if precision is not None else 6
            # Java rounds half-up on the shortest decimal representation of the double (what
            # DuckDB prints for it); the sign is kept for values that round to zero.
            magnitude = exp.Abs(this=arg)
            shortest = exp.cast(magnitude, "VARCHAR") if kind == "DOUBLE" else magnitude
            rounded = exp.cast(exp.cast(shortest, f"DECIMAL(38, {digits})"), "VARCHAR")
            negative = exp.LT(this=arg, expression=exp.Literal.number(0))
            sign = exp.case().when(negative, exp.Literal.string("-")).else_(exp.Literal.string(""))
            number = _duck(
                "printf", exp.Literal.string(pad), exp.DPipe(this=sign, expression=rounded)
            )
            missing = _duck("printf", exp.Literal.string(pad), exp.Literal.string("null"))
            pieces.append(exp.Coalesce(this=number, expressions=[missing]))
    if position < len(pattern):
        pieces.append(exp.Literal.string(pattern[position:]))
    if not pieces:
        return exp.Literal.string("")
    result = pieces[0]
    for piece in pieces[1:]:
        result = exp.DPipe(this=result, expression=piece)
    return exp.Paren(this=result)


def _json_extract_scalar(node: Any) -> Any:
    """Trino returns the scalar's text, NULL for objects, arrays, JSON null, a missing path or
    invalid JSON. DuckDB reprints numbers with a fraction or exponent (1.50 -> 1.5), so those are
    an error unless the value is cast to double (where the text does not matter)."""
    from sqlglot import exp

    path = node.expression
    text = path.name if isinstance(path, exp.Literal) else path.sql("trino")
    text = text[1:-1] if len(text) > 1 and text[0] == text[-1] == "'" else text
    if not _JSON_PATH.match(text):
        raise _refuse_function("json_extract_scalar", f"path {text!r}")
    value, json_path = node.this, exp.Literal.string(text)
    kind = _duck("json_type", value, json_path)
    as_double = isinstance(node.parent, exp.Cast | exp.TryCast) and node.parent.to.this in (
        exp.DataType.Type.DOUBLE,
    )
    scalar = _duck("json_extract_string", value, json_path)
    not_scalar = [exp.Literal.string(k) for k in ("OBJECT", "ARRAY", "NULL")]
    result = (
        exp.case()
        .when(exp.Not(this=_duck("json_valid", value)), exp.Null())
        .when(exp.In(this=kind, expressions=not_scalar), exp.Null())
    )
    if not as_double:
        reprinted = _error(
            "json_extract_scalar() of a JSON number with a fraction or exponent has no exact "
            "equivalent in the embedded engine (cast it to double, or run it on Trino)"
        )
        result = result.when(exp.EQ(this=kind, expression=exp.Literal.string("DOUBLE")), reprinted)
    result = result.else_(scalar)
    result.type = exp.DataType.build("VARCHAR")
    return result


# -- running -------------------------------------------------------------------------------------

_MACROS = (
    "CREATE MACRO trino_divide(a, b) AS "
    "CASE WHEN b = 0 THEN error('Division by zero') ELSE a / b END",
    "CREATE MACRO trino_modulus(a, b) AS "
    "CASE WHEN b = 0 THEN error('Division by zero') ELSE a % b END",
)


def _load_extensions(con: Any) -> None:
    import duckdb_extension_avro
    import duckdb_extension_iceberg

    for module, name in ((duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
        path = _extension_path(module.__file__, name)
        con.execute(f"LOAD '{path}'")


_EXTENSIONS: dict[str, str] = {}


def _extension_path(module_file: str, name: str) -> str:
    if name not in _EXTENSIONS:
        from pathlib import Path

        _EXTENSIONS[name] = str(next(Path(module_file).parent.rglob(f"{name}.duckdb_extension")))
    return _EXTENSIONS[name]


def duckdb_connection(
    settings: Settings,
    tables: _Tables | None = None,
    only: set[tuple[str, str]] | None = None,
) -> Any:
    """DuckDB with the Iceberg tables of the catalog (all, or `only` those) as views named like
    Trino's tables, Trino's division semantics and the session time zone UTC."""
    import duckdb

    tables = tables or _Tables.load(settings)
    keys = tables.names() if only is None else only & tables.names()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET integer_division = true")  # int / int truncates, as in Trino
    # DuckDB compares intervals normalized (1 month == 30 days), and these optimizers merge
    # "equal" expressions: d + INTERVAL 1 MONTH would come back as d + INTERVAL 30 DAY.
    con.execute(f"SET disabled_optimizers = '{_MERGING_OPTIMIZERS}'")
    for macro in _MACROS:
        con.execute(macro)
    _load_extensions(con)
    con.execute(f"ATTACH ':memory:' AS {TRINO_CATALOG}")
    for schema in tables.schemas:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS {TRINO_CATALOG}."{schema}"')
    for schema, name in sorted(keys):
        con.execute(
            f'CREATE VIEW {TRINO_CATALOG}."{schema}"."{name}" AS '
            f"SELECT * FROM iceberg_scan('{tables.get((schema, name)).metadata_location}')"
        )
    return con


_MERGING_OPTIMIZERS = "common_subexpressions,common_aggregate,duplicate_groups"
_WIDE_INTEGERS = {"HUGEINT", "UHUGEINT", "UBIGINT"}


def _execute(con: Any, duck_sql: str) -> pd.DataFrame:
    """Run the translated query; DuckDB's 128-bit integers (sum, count_if) come back as bigint."""
    relation = con.sql(duck_sql)
    types = [str(t) for t in relation.types]
    wide = [i for i, t in enumerate(types) if t in _WIDE_INTEGERS]
    if not wide:
        return relation.df()
    names = relation.columns
    if len(set(names)) == len(names):
        quoted = ['"' + n.replace('"', '""') + '"' for n in names]
        projection = ", ".join(
            f"CAST({q} AS BIGINT) AS {q}" if i in wide else q for i, q in enumerate(quoted)
        )
        return relation.project(projection).df()
    frame = relation.df()
    for i in wide:
        column = frame.iloc[:, i]
        frame.isetitem(i, column.astype("Int64" if column.isna().any() else "int64"))
    return frame


def run_sql(settings: Settings, sql: str) -> pd.DataFrame:
    """Run one Trino-dialect query and return the result."""
    if settings.env is Environment.PROD:
        from mlops_assets.lakehouse.warehouse import trino_query

        return trino_query(settings, sql)
    import duckdb

    tables = _Tables.load(settings)
    metadata = metadata_query(sql, tables)
    if metadata is not None:
        return metadata
    duck_sql, used = _translate(sql, tables)
    con = duckdb_connection(settings, tables, only=used)  # views of the tables it reads
    try:
        return _execute(con, duck_sql)
    except duckdb.Error as err:
        message = str(err).split("\n")[0]
        raise QueryError(f"query failed: {message}") from None
    finally:
        with contextlib.suppress(Exception):
            con.close()
