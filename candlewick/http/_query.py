"""Query-argument and path-symbol parsing: a bad value raises ValidationFailed (400 VALIDATION_ERROR) naming where it was."""

from __future__ import annotations

import math
import re

from quart import request

from candlewick.errors import ValidationFailed
from candlewick.schema import SYMBOL_RE

INTEGER_RE = re.compile(r"-?[0-9]{1,18}")
DIGITS_RE = re.compile(r"-?[0-9]+")  # any length


def bad_query(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"invalid query parameter {name}: {message}", [{"path": f"query.{name}", "message": message}])


def int_arg(name: str, bounds: tuple[int, int, int], *, clamp: bool = False) -> int:
    """The current request's query argument ``name`` as an integer in ``(lo, hi, default)``.

    Not an integer: 400. Out of range: 400, or with ``clamp`` the nearest bound (the old API's
    ``limit``).
    """
    lo, hi, default = bounds
    raw = request.args.get(name)
    if raw is None:
        return default
    # int() alone would also take " 5", "+5", "5_0" and non-ASCII digits
    if (DIGITS_RE if clamp else INTEGER_RE).fullmatch(raw) is None:
        raise bad_query(name, f"must be an integer from {lo} to {hi}")
    if clamp:
        digits = raw.lstrip("-").lstrip("0") or "0"
        if len(digits) > 18:  # beyond any bound: no need to convert every digit (nor hit int()'s limit)
            return lo if raw.startswith("-") else hi
        value = -int(digits) if raw.startswith("-") else int(digits)
        return min(max(value, lo), hi)
    if not lo <= (value := int(raw)) <= hi:
        raise bad_query(name, f"must be an integer from {lo} to {hi}")
    return value


def float_arg(name: str, raw: str) -> float:
    """``raw``, the value of query argument ``name``, as finite epoch seconds."""
    try:
        value = float(raw)
    except ValueError:
        raise bad_query(name, "must be epoch seconds") from None
    if not math.isfinite(value):
        raise bad_query(name, "must be a finite number")
    return value


def symbol_arg(name: str) -> str | None:
    """The current request's query argument ``name`` as a symbol; None if absent."""
    raw = request.args.get(name)
    if raw is not None and SYMBOL_RE.fullmatch(raw) is None:
        raise bad_query(name, "must be a symbol: 1-32 characters of A-Z a-z 0-9 . - _ : /")
    return raw


def path_symbol(raw: str) -> str:
    """``raw`` if it is a valid symbol (the ``symbol`` of a route's path)."""
    if SYMBOL_RE.fullmatch(raw) is None:
        raise ValidationFailed("invalid symbol", [{"path": "path.symbol",
                                                   "message": "1-32 characters of A-Z a-z 0-9 . - _ : /"}])
    return raw
