"""The expected side of the SQL conformance suite: helpers that compute Trino's answer
independently with pandas, the Case record, and the comparison of an answer with its expectation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

DTYPES = {
    "bigint": ("int64", "Int64"),
    "integer": ("int32", "Int32"),
    "double": ("float64", "float64"),
    "boolean": ("bool", "boolean"),
    "varchar": ("object", "object"),
    "date": ("datetime64[us]", "datetime64[us]"),
    "timestamp(6) with time zone": ("datetime64[us, UTC]", "datetime64[us, UTC]"),
    "array": ("object", "object"),
    "decimal": ("float64", "float64"),  # DuckDB's decimals arrive as float64
    "interval": ("timedelta64[us]", "timedelta64[us]"),
}


def _dtype(trino: str, column: pd.Series) -> str:
    base = trino.split("(")[0] if trino.startswith(("array", "decimal")) else trino
    plain, nullable = DTYPES[base]
    return nullable if column.isna().any() else plain


@dataclass
class Case:
    sql: str
    expected: Callable[[dict[str, pd.DataFrame]], pd.DataFrame]
    types: list[str]
    # column -> check(actual column, expected column) for approximate Trino functions
    approx: dict[str, Callable[[pd.Series, pd.Series], None]] = field(default_factory=dict)
    ordered: bool = True


def within_relative(bound: float) -> Callable[[pd.Series, pd.Series], None]:
    def check(actual: pd.Series, expected: pd.Series) -> None:
        error = np.abs(actual.to_numpy(float) - expected.to_numpy(float)) / expected.to_numpy(float)
        assert (error <= bound).all(), (actual.tolist(), expected.tolist())

    return check


def within_rank(p: float, bound: float = 0.01) -> Callable[[pd.Series, pd.Series], None]:
    """The value's rank among its group's values (the expected column holds them) is p, within
    Trino's rank error: some rank in [#values < v, #values <= v] / n is within p +- bound."""

    def check(actual: pd.Series, expected: pd.Series) -> None:
        for value, values in zip(actual, expected, strict=True):
            values = np.asarray(values, dtype=float)
            below = (values < value).mean()
            at_most = (values <= value).mean()
            assert value in values, value  # quantile_disc answers with one of the values
            assert below - bound <= p <= at_most + bound, (value, p, below, at_most)

    return check


def within_ranks(ps: list[float], bound: float = 0.01) -> Callable[[pd.Series, pd.Series], None]:
    """approx_percentile(x, ARRAY[p, ...]): each element within its rank error."""

    def check(actual: pd.Series, expected: pd.Series) -> None:
        for answers, values in zip(actual, expected, strict=True):
            assert len(answers) == len(ps)
            for p, answer in zip(ps, answers, strict=True):
                within_rank(p, bound)(pd.Series([answer]), pd.Series([values]))

    return check


def trino_round(x, digits: int = 0):
    """Trino's round(double, d): half away from zero."""
    factor = 10.0**digits
    x = np.asarray(x, dtype=float)
    return np.sign(x) * np.floor(np.abs(x) * factor + 0.5) / factor


def java_f(x: float, digits: int) -> str:
    """Java's %.nf: half-up on the shortest decimal representation of the double."""
    from decimal import ROUND_HALF_UP, Decimal

    d = Decimal(repr(float(x))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    text = f"{abs(d):f}"
    return ("-" if x < 0 else "") + text


def frame(**columns) -> pd.DataFrame:
    return pd.DataFrame({k: pd.Series(v).reset_index(drop=True) for k, v in columns.items()})


def utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def days(series: pd.Series) -> pd.Series:
    return pd.to_datetime(pd.Series(series)).astype("datetime64[us]")


def week_start(series: pd.Series) -> pd.Series:
    dates = pd.to_datetime(pd.Series(series))
    return (dates - pd.to_timedelta(dates.dt.weekday, unit="D")).astype("datetime64[us]")


def _p(d):
    return d["predictions"]


def _o(d):
    return d["online"]


def _m(d):
    return d["monitoring"]


P = "iceberg.predictions.churn_daily"
OL = "iceberg.predictions.churn_online"
M = "iceberg.monitoring.churn_daily"
T = "iceberg.monitoring.timeline"


def _normalize(value):
    if isinstance(value, np.ndarray):
        return [_normalize(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame, case: Case) -> None:
    assert list(actual.columns) == list(expected.columns), (actual.columns, expected.columns)
    assert len(actual) == len(expected), (len(actual), len(expected))
    assert len(case.types) == len(expected.columns)
    if not case.ordered:
        actual = actual.sort_values(list(actual.columns)).reset_index(drop=True)
        expected = expected.sort_values(list(expected.columns)).reset_index(drop=True)
    for name, trino in zip(expected.columns, case.types, strict=True):
        got = actual[name]
        assert str(got.dtype) == _dtype(trino, got), (name, trino, str(got.dtype))
        if name in case.approx:
            case.approx[name](got, expected[name])
        elif trino == "double" or trino.startswith("decimal"):
            np.testing.assert_allclose(
                got.to_numpy(float), expected[name].to_numpy(float), rtol=1e-9, err_msg=name
            )
        elif trino.startswith("timestamp") or trino == "date":
            left = pd.to_datetime(got, utc=trino != "date")
            right = pd.to_datetime(expected[name], utc=trino != "date")
            assert left.tolist() == right.tolist(), name
        else:
            left = [_normalize(v) for v in got]
            right = [_normalize(v) for v in expected[name]]
            assert left == right, (name, left[:5], right[:5])
