"""The front end's one error, and the messages that name what the embedded engine refuses."""

from __future__ import annotations


class QueryError(ValueError):
    """A query that is refused (not a single read, or not reproducible exactly) or that failed."""


def refuse_function(name: str, why: str = "") -> QueryError:
    """A function, or a form of it, whose DuckDB answer could differ from Trino's."""
    detail = f" ({why})" if why else ""
    return QueryError(
        f"function {name}() has no exact equivalent in the embedded engine{detail}; run it on Trino"
    )


def refuse(what: str, why: str = "") -> QueryError:
    """A construct or statement the embedded engine does not run."""
    detail = f" ({why})" if why else ""
    return QueryError(f"{what} is not supported by the embedded engine{detail}; run it on Trino")
