"""Query-argument and path-symbol parsing: a bad value raises ValidationFailed (400 VALIDATION_ERROR) naming where it was."""

from __future__ import annotations

import math
import re

from quart import request

from candlewick.errors import ValidationFailed
from candlewick.schema._decode import SYMBOL_RE

INTEGER_RE = re.compile(r"-?[0-9]{1,18}")


def bad_query(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"invalid query parameter {name}: {message}", [{"path": f"query.{name}", "message": message}])


def int_arg(name: str, bounds: tuple[int, int, int]) -> int:
    """The current request's query argument ``name`` as an integer in ``(lo, hi, default)``."""
    lo, hi, default = bounds
    raw = request.args.get(name)
    if raw is None:
        return default
    # int() alone would also take " 5", "+5", "5_0" and non-ASCII digits
    if INTEGER_RE.fullmatch(raw) is None or not lo <= (value := int(raw)) <= hi:
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


def path_symbol(raw: str) -> str:
    """``raw`` if it is a valid symbol (the ``symbol`` of a route's path)."""
    if SYMBOL_RE.fullmatch(raw) is None:
        raise ValidationFailed("invalid symbol", [{"path": "path.symbol",
                                                   "message": "1-32 characters of A-Z a-z 0-9 . - _ : /"}])
    return raw
