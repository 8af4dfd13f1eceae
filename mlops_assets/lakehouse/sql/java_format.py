"""format(fmt, args...) with Java's format strings, as string building in DuckDB: %s, %d and %f
with a width, a precision, the '-' flag and '0' for %d, and %%; other specifiers are refused."""

from __future__ import annotations

import re
from collections.abc import Iterator

from sqlglot import exp

from .errors import refuse_function
from .nodes import INTEGER_TYPES, Context, duck, type_name

_SPECIFIER = re.compile(
    r"%(?P<index>\d+\$)?(?P<flags>[-#+ 0,(<]*)(?P<width>\d+)?(?:\.(?P<precision>\d+))?"
    r"(?P<conversion>[a-zA-Z%])"
)
# Per conversion: the flags translated, and the argument types printed as Java prints them.
_FLAGS = {"s": "-", "d": "-0", "f": "-"}
_ARGUMENT_TYPES = {
    "s": INTEGER_TYPES | {"VARCHAR", "BOOLEAN", "DATE"},
    "d": INTEGER_TYPES,
    "f": {"DOUBLE", "DECIMAL"},
}


def constant_format(node: exp.Expression, name: str) -> None:
    """The format string must be a constant: it is translated, not interpreted at run time."""
    fmt = node.this
    if not isinstance(fmt, exp.Literal) or not fmt.is_string:
        raise refuse_function(name, "a non-constant format string")


def format_call(node: exp.Expression, context: Context) -> exp.Expression:
    """The string format() builds: literal text and one piece per specifier, concatenated."""
    pattern = node.this.name
    arguments = iter(node.expressions)
    pieces: list[exp.Expression] = []
    position = 0
    for match in _SPECIFIER.finditer(pattern):
        if match.start() > position:
            pieces.append(exp.Literal.string(pattern[position : match.start()]))
        position = match.end()
        pieces.append(_piece(match, arguments))
    if position < len(pattern):
        pieces.append(exp.Literal.string(pattern[position:]))
    if not pieces:
        return exp.Literal.string("")
    result = pieces[0]
    for piece in pieces[1:]:
        result = exp.DPipe(this=result, expression=piece)
    return exp.Paren(this=result)


def _piece(match: re.Match[str], arguments: Iterator[exp.Expression]) -> exp.Expression:
    """What one specifier prints, taking its argument from `arguments`."""
    spec, conversion, flags = match.group(0), match["conversion"], match["flags"]
    if conversion == "%":
        if flags or match["width"] or match["precision"] or match["index"]:
            raise refuse_function("format", f"specifier {spec}")
        return exp.Literal.string("%")
    if match["index"] or conversion not in _FLAGS:
        raise refuse_function("format", f"specifier {spec}")
    arg = next(arguments, None)
    if arg is None:
        raise refuse_function("format", f"no argument for {spec}")
    if any(f not in _FLAGS[conversion] for f in flags) or ("-" in flags and "0" in flags):
        raise refuse_function("format", f"flags of {spec}")
    if (flags and not match["width"]) or (conversion == "d" and match["precision"]):
        raise refuse_function("format", f"specifier {spec}")
    kind = type_name(arg)
    if kind not in _ARGUMENT_TYPES[conversion]:
        raise refuse_function("format", f"{spec} of a {kind.lower()} value")
    if conversion == "s":
        return _string(arg, match)
    if conversion == "d":
        return _or_null(duck("printf", exp.Literal.string(spec), arg), match)
    return _or_null(_fixed(arg, kind, match), match)


def _string(arg: exp.Expression, match: re.Match[str]) -> exp.Expression:
    """%s: the value's text ('null' for NULL), padded and cut to the precision as printf does."""
    precision = f".{match['precision']}" if match["precision"] else ""
    shown = f"%{_left(match)}{match['width'] or ''}{precision}s"
    text = exp.Coalesce(this=exp.cast(arg, "VARCHAR"), expressions=[exp.Literal.string("null")])
    return duck("printf", exp.Literal.string(shown), text)


def _fixed(arg: exp.Expression, kind: str, match: re.Match[str]) -> exp.Expression:
    """%f: Java rounds half-up on the shortest decimal representation of the double (what DuckDB
    prints for it); the sign is kept for values that round to zero."""
    digits = int(match["precision"]) if match["precision"] is not None else 6
    magnitude = exp.Abs(this=arg)
    shortest = exp.cast(magnitude, "VARCHAR") if kind == "DOUBLE" else magnitude
    rounded = exp.cast(exp.cast(shortest, f"DECIMAL(38, {digits})"), "VARCHAR")
    negative = exp.LT(this=arg, expression=exp.Literal.number(0))
    sign = exp.case().when(negative, exp.Literal.string("-")).else_(exp.Literal.string(""))
    return duck("printf", exp.Literal.string(_pad(match)), exp.DPipe(this=sign, expression=rounded))


def _or_null(number: exp.Expression, match: re.Match[str]) -> exp.Expression:
    """A number, or 'null' padded to the width when it is NULL (as Java prints it)."""
    missing = duck("printf", exp.Literal.string(_pad(match)), exp.Literal.string("null"))
    return exp.Coalesce(this=number, expressions=[missing])


def _pad(match: re.Match[str]) -> str:
    """printf's %s with the specifier's width and alignment."""
    return f"%{_left(match)}{match['width'] or ''}s"


def _left(match: re.Match[str]) -> str:
    return "-" if "-" in match["flags"] else ""
