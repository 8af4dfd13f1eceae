"""Conformance cases: what the translation cannot reproduce exactly, and the name the refusal
gives."""

from __future__ import annotations

P_REFUSED = "iceberg.predictions.churn_daily"
REFUSED = {
    # functions and forms with no exact DuckDB equivalent, named in the error
    "unknown function": (f"SELECT geometric_mean(score) FROM {P_REFUSED}", "geometric_mean()"),
    "user function": ("SELECT my_udf(1)", "my_udf()"),
    "regexp": (f"SELECT regexp_like(rule, 'o+') FROM {P_REFUSED}", "regexp_like()"),
    "typeof": (f"SELECT typeof(score) FROM {P_REFUSED}", "typeof()"),
    "duckdb table function": ("SELECT * FROM read_parquet('/etc/passwd')", "read_parquet()"),
    "format %x": (f"SELECT format('%x', customer_id) FROM {P_REFUSED}", "format() "),
    "format %e": (f"SELECT format('%.2e', score) FROM {P_REFUSED}", "specifier %.2e"),
    "format grouping flag": (f"SELECT format('%,d', customer_id) FROM {P_REFUSED}", "format()"),
    "format %s of double": (f"SELECT format('%s', score) FROM {P_REFUSED}", "%s of a double"),
    "format %d of double": (f"SELECT format('%d', score) FROM {P_REFUSED}", "%d of a double"),
    "format argument index": (f"SELECT format('%1$s', rule) FROM {P_REFUSED}", "format()"),
    "max_by with a count": (f"SELECT max_by(customer_id, score, 3) FROM {P_REFUSED}", "max_by()"),
    "weighted percentile": (
        f"SELECT approx_percentile(score, 2, 0.5) FROM {P_REFUSED}",
        "approx_percentile()",
    ),
    "avg of decimal": (
        f"SELECT avg(CASE WHEN actual = 1 THEN 1.0 ELSE 0.0 END) FROM {P_REFUSED}",
        "avg()",
    ),
    "decimal division": (f"SELECT count(*) / 2.0 FROM {P_REFUSED}", "division of decimal"),
    "date_diff month": (
        f"SELECT date_diff('month', prediction_date, DATE '2025-12-01') FROM {P_REFUSED}",
        "date_diff()",
    ),
    "date_format %D": (f"SELECT date_format(scored_at, '%D') FROM {P_REFUSED}", "%D"),
    "extract timezone": (
        f"SELECT extract(timezone_hour FROM scored_at) FROM {P_REFUSED}",
        "extract()",
    ),
    "cast timestamp to varchar": (
        f"SELECT CAST(scored_at AS varchar) FROM {P_REFUSED}",
        "cast() has no exact equivalent",
    ),
    "cast to varchar(n)": (f"SELECT CAST(rule AS varchar(3)) FROM {P_REFUSED}", "cast()"),
    "cast timestamp to timestamp(3)": (
        f"SELECT CAST(scored_at AS timestamp) FROM {P_REFUSED}",
        "cast()",
    ),
    "array subscript": (f"SELECT split(rule, ':')[1] FROM {P_REFUSED}", "subscript"),
    "date minus date": (
        f"SELECT prediction_date - DATE '2025-01-01' FROM {P_REFUSED}",
        "date - date",
    ),
    "tablesample": (f"SELECT * FROM {P_REFUSED} TABLESAMPLE BERNOULLI (10)", "TABLESAMPLE"),
    "at time zone": (f"SELECT scored_at AT TIME ZONE 'UTC' FROM {P_REFUSED}", "AT TIME ZONE"),
    "rollup": (
        f"SELECT risk_band, count(*) FROM {P_REFUSED} GROUP BY ROLLUP (risk_band)",
        "ROLLUP",
    ),
    "lambda": (
        f"SELECT transform(split(rule, ':'), x -> upper(x)) FROM {P_REFUSED}",
        "transform()",
    ),
    "unqualified table": ("SELECT * FROM churn_daily", "iceberg.<schema>.<table>"),
    # statements that are not one read
    "insert": (f"INSERT INTO {P_REFUSED} SELECT * FROM {P_REFUSED}", "INSERT is not allowed"),
    "create": ("CREATE TABLE iceberg.predictions.x AS SELECT 1 AS a", "CREATE is not allowed"),
    "drop": (f"DROP TABLE {P_REFUSED}", "DROP is not allowed"),
    "delete": (f"DELETE FROM {P_REFUSED} WHERE actual IS NULL", "DELETE is not allowed"),
    "update": (f"UPDATE {P_REFUSED} SET actual = 1", "UPDATE is not allowed"),
    "alter": (f"ALTER TABLE {P_REFUSED} ADD COLUMN x integer", "ALTER is not allowed"),
    "explain": (f"EXPLAIN SELECT * FROM {P_REFUSED}", "EXPLAIN is not allowed"),
    "two statements": ("SELECT 1; SELECT 2", "expected one statement, got 2"),
    "show create table": (f"SHOW CREATE TABLE {P_REFUSED}", "SHOW CREATE"),
    "show tables without a schema": ("SHOW TABLES", "Schema must be specified"),
    "unknown schema": ("SHOW TABLES FROM iceberg.nowhere", "Schema 'nowhere' does not exist"),
    "unknown table": ("DESCRIBE iceberg.predictions.nothing", "does not exist"),
    # checked while running: the value decides, the error names the function
    "json number with a fraction": (
        "SELECT json_extract_scalar(features, '$.spend_30d_usd') FROM "
        "iceberg.predictions.churn_online",
        "json_extract_scalar()",
    ),
    "double as varchar in scientific notation": (
        f"SELECT CAST(score * 1e9 AS varchar) FROM {P_REFUSED}",
        "cast(double AS varchar)",
    ),
    "varchar that is not an integer": (
        f"SELECT CAST(rule AS integer) FROM {P_REFUSED}",
        "Cannot cast a non-integer varchar",
    ),
    "integer division by zero": (
        f"SELECT customer_id / (prediction - prediction) FROM {P_REFUSED}",
        "Division by zero",
    ),
}
