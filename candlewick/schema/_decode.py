"""Decoding and validating request bodies into models, all-or-nothing, with JSON-path errors.

The tick webhook has a loop of its own over orjson's output; everything else goes through the one
cattrs converter. Both raise ``ValidationFailed`` listing every problem found. See
docs/ARCHITECTURE.md, "One tick, from the POST to the SSE client" (step 2).
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from typing import Any

import cattrs
import orjson

from candlewick.errors import MalformedJSON, ValidationFailed
from candlewick.schema._digest import digest_key
from candlewick.schema._models import SymbolInfo, Tick

SYMBOL_RE = re.compile(r"[A-Za-z0-9.\-_:/]{1,32}")
MAX_ITEMS = 10_000
MAX_KEY_LEN = 200
MAX_FUTURE_S = 300.0
MAX_DETAILS = 50

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
        if ts > 1e11:
            return None, "looks like milliseconds; send epoch seconds (divide by 1000)"
        return None, "is more than 5 minutes in the future"
    return ts, None


def _common_ticks(source: str, items: list, now: float) -> list[Tick] | None:
    """The hot path: ticks when every item has the common shape (float price, ts and volume,
    volume may be absent), else None and ``decode_ticks`` checks item by item with paths.

    Accepts only items the full loop accepts and builds the same ``Tick`` from them, at about
    half its cost per tick: exact type tests instead of ``_number``/``parse_ts`` calls, each
    distinct symbol matched once per body, tuples built without the namedtuple's Python-level
    ``__new__``."""
    limit = now + MAX_FUTURE_S
    inf = math.inf
    match_symbol = SYMBOL_RE.fullmatch
    new = tuple.__new__
    digest = digest_key
    symbols: set[str] = set()
    ticks: list[Tick] = []
    append = ticks.append
    for item in items:
        if type(item) is not dict:
            return None
        get = item.get
        symbol, price, ts, volume, key = get("symbol"), get("price"), get("ts"), get("volume", 0.0), \
            get("idempotencyKey")
        if not (type(price) is float and type(ts) is float and type(volume) is float and type(symbol) is str
                and 0.0 < price < inf and 0.0 <= volume < inf and 0.0 <= ts <= limit):
            return None
        if symbol not in symbols:
            if match_symbol(symbol) is None:
                return None
            symbols.add(symbol)
        if key is None:
            key = f"{source}:{symbol}:{ts!r}:{price!r}:{volume!r}"
        elif type(key) is not str or not 1 <= len(key) <= MAX_KEY_LEN:
            return None
        append(new(Tick, (digest(key.encode()), symbol, price, ts, volume)))
    return ticks


def decode_ticks(body: bytes, now: float | None = None) -> tuple[str, list[Tick]]:
    """Decode a tick webhook body into (source, ticks); raise on any invalid part."""
    doc = parse_json(body)
    now = time.time() if now is None else now
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
    if not errors:
        common = _common_ticks(source, items, now)
        if common is not None:
            return source, common

    ticks: list[Tick] = []
    append = ticks.append
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
        price = item.get("price")
        p = _number(price)
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
            if key is None:
                key = f"{source}:{symbol}:{ts!r}:{p!r}:{v!r}"
            append(Tick(digest_key(key.encode()), symbol, p, ts, v))
    if errors:
        raise ValidationFailed(f"{len(errors)} invalid field(s); nothing was applied", errors)
    return source, ticks


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
