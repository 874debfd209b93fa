"""Decoding and validating request bodies into models, all-or-nothing, with JSON-path errors.

A tick webhook body goes to columns (``decode_tick_columns``): valid bodies of the common shapes
through the typed decoder of ``_columns`` (msgspec, then numpy checks); anything else through
orjson and a loop over the items that lists every problem with its JSON path, or builds the same
columns. Everything else goes through the one cattrs converter. Both raise ``ValidationFailed``
listing every problem found. See docs/ARCHITECTURE.md, "One tick, from the POST to the SSE
client" (step 2).
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

import cattrs
import orjson

from candlewick.errors import MalformedJSON, ValidationFailed
from candlewick.schema._batch import TickColumns
from candlewick.schema._columns import build_columns, typed_body, typed_columns, typed_items
from candlewick.schema._models import SymbolInfo, Tick
from candlewick.schema._rules import MAX_DETAILS, MAX_FUTURE_S, MAX_ITEMS, MAX_KEY_LEN, MILLISECONDS_ABOVE, SYMBOL_RE

__all__ = ["MAX_DETAILS", "MAX_FUTURE_S", "MAX_ITEMS", "MAX_KEY_LEN", "SYMBOL_RE", "converter", "decode_symbols",
           "decode_tick_columns", "decode_ticks", "parse_json", "parse_ts"]

converter = cattrs.Converter(forbid_extra_keys=False)


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"request body is not valid JSON: {exc}") from None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def parse_ts(value: Any, now: float) -> tuple[float | None, str | None]:
    """Epoch seconds from a number or an ISO-8601 string with offset; (None, why) if invalid."""
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return None, "must be epoch seconds or an ISO-8601 timestamp with offset"
        if dt.tzinfo is None:
            return None, "ISO-8601 timestamp needs an offset such as Z or +00:00"
        ts = dt.timestamp()
    else:
        ts = _number(value)
        if ts is None:
            return None, "must be a finite number of epoch seconds or an ISO-8601 string"
    if ts < 0:
        return None, "must not be before 1970"
    if ts > now + MAX_FUTURE_S:
        if ts > MILLISECONDS_ABOVE:
            return None, "looks like milliseconds; send epoch seconds (divide by 1000)"
        return None, "is more than 5 minutes in the future"
    return ts, None


def decode_tick_columns(body: bytes, now: float | None = None) -> tuple[str, TickColumns]:
    """Decode a tick webhook body into (source, columns); raise on any invalid part.

    The columns carry digests only (``keys`` is None): each key's 16-byte digest, of the client's
    ``idempotencyKey`` or of ``source:symbol:ts:price:volume``."""
    now = time.time() if now is None else now
    typed = typed_body(body)
    if typed is not None:
        columns = typed_columns(typed.source, typed.items, now)
        if columns is not None:
            return typed.source, columns
    return _checked_columns(body, now)


def decode_ticks(body: bytes, now: float | None = None) -> tuple[str, list[Tick]]:
    """Decode a tick webhook body into (source, ticks), each tick's key being its digest's 16 bytes;
    raise on any invalid part. The ticks of ``decode_tick_columns``, one object each."""
    source, columns = decode_tick_columns(body, now)
    return source, columns.to_ticks()


def _common_columns(source: str, items: list[Any], now: float) -> TickColumns | None:
    """Columns of items parsed by orjson when all are in the typed decoder's shapes (extra fields
    allowed) and valid, else None."""
    typed = typed_items(items)
    return None if typed is None else typed_columns(source, typed, now)


def _checked_columns(body: bytes, now: float, common: bool = True) -> tuple[str, TickColumns]:
    """Parse with orjson and check item by item, naming every problem (at most ``MAX_DETAILS``) by
    its JSON path; or, all valid, the columns. ``common=False`` skips the typed attempt on the
    parsed items (the tests compare the two)."""
    doc = parse_json(body)
    errors: list[dict[str, str]] = []

    def bad(path: str, message: str) -> None:
        if len(errors) < MAX_DETAILS:
            errors.append({"path": path, "message": message})

    if not isinstance(doc, dict):
        raise ValidationFailed("body must be a JSON object", [{"path": "$", "message": "must be an object"}])
    source = doc.get("source")
    if not isinstance(source, str) or not source:  # docs/API.md: a non-empty string (as the OpenAPI document)
        bad("$.source", "required non-empty string")
        source = ""
    items = doc.get("items")
    if not isinstance(items, list):
        bad("$.items", "required array of 1 to 10000 ticks")
        items = []
    elif not 1 <= len(items) <= MAX_ITEMS:
        bad("$.items", f"must hold 1 to {MAX_ITEMS} ticks, got {len(items)}")
        items = []
    if common and not errors:
        columns = _common_columns(source, items, now)
        if columns is not None:
            return source, columns

    symbols: list[str] = []
    prices: list[float] = []
    times: list[float] = []
    volumes: list[float] = []
    keys: list[str | None] = []
    match_symbol = SYMBOL_RE.fullmatch
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            bad(f"$.items[{i}]", "must be an object")
            continue
        ok = True
        symbol = item.get("symbol")
        if not isinstance(symbol, str) or match_symbol(symbol) is None:
            bad(f"$.items[{i}].symbol", "required, 1-32 characters of A-Z a-z 0-9 . - _ : /")
            ok = False
        p = _number(item.get("price"))
        if p is None or p <= 0:
            bad(f"$.items[{i}].price", "required finite number > 0")
            ok = False
        volume = item.get("volume", 0)
        v = 0.0 if volume is None else _number(volume)
        if v is None or v < 0:
            bad(f"$.items[{i}].volume", "must be a finite number >= 0")
            ok = False
        if "ts" not in item:
            bad(f"$.items[{i}].ts", "required: epoch seconds or ISO-8601 string")
            ok = False
            ts = None
        else:
            ts, why = parse_ts(item["ts"], now)
            if why is not None:
                bad(f"$.items[{i}].ts", why)
                ok = False
        key = item.get("idempotencyKey")
        if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LEN):
            bad(f"$.items[{i}].idempotencyKey", f"must be a string of 1 to {MAX_KEY_LEN} characters")
            ok = False
        if ok and not errors:
            symbols.append(symbol)
            prices.append(p)
            times.append(ts)
            volumes.append(v)
            keys.append(key)
    if errors:
        raise ValidationFailed(f"{len(errors)} invalid field(s); nothing was applied", errors)
    return source, build_columns(source, symbols, prices, times, volumes, keys)


def decode_symbols(body: bytes) -> list[SymbolInfo]:
    """Decode a symbols webhook body (``{"items": [{symbol, base, quote, active}]}``)."""
    doc = parse_json(body)
    errors: list[dict[str, str]] = []
    items = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        raise ValidationFailed("items must be an array of 1 to 10000 symbols",
                               [{"path": "$.items", "message": "required array of 1 to 10000 symbols"}])
    out: list[SymbolInfo] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append({"path": f"$.items[{i}]", "message": "must be an object"})
            continue
        sym = item.get("symbol")
        if not isinstance(sym, str) or SYMBOL_RE.fullmatch(sym) is None:
            errors.append({"path": f"$.items[{i}].symbol",
                           "message": "required, 1-32 characters of A-Z a-z 0-9 . - _ : /"})
        for name in ("base", "quote"):
            if name in item and not (isinstance(item[name], str) and len(item[name]) <= 32):
                errors.append({"path": f"$.items[{i}].{name}", "message": "must be a string of at most 32 characters"})
        if "active" in item and not isinstance(item["active"], bool):
            errors.append({"path": f"$.items[{i}].active", "message": "must be true or false"})
        if not errors:
            fields = {k: item[k] for k in ("symbol", "base", "quote", "active") if k in item}
            out.append(converter.structure(fields, SymbolInfo))
    if errors:
        raise ValidationFailed(f"{len(errors)} invalid field(s); nothing was applied", errors[:MAX_DETAILS])
    return out
