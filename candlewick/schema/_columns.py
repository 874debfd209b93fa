"""The tick body decoded by type in C (msgspec) and taken straight to columns, checked with numpy.

This is the decoder of every valid body in the common shapes: numbers (integers too) for price,
ts and volume, volume absent or null, idempotencyKey absent, null or a string. It never names a
problem: on anything it does not accept it answers None, and ``_decode`` checks the body item by
item, which gives the JSON-path details. It accepts only what that check accepts and gives the
same ticks (the hypothesis test in tests/unit/test_decode_columns.py holds the two together).

Strictness: the strict decoder refuses unknown fields, so every string it reads is one it
decodes (UTF-8 checked) and every number one it converts (overflow refused). A body with extra
fields is first parsed by orjson, whose rules are the contract's (no NaN, valid UTF-8, numbers
that fit a double, depth), then converted by the lenient Structs, which ignore extra fields.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import numpy as np

from candlewick.schema._batch import TickColumns
from candlewick.schema._digest import key_digests
from candlewick.schema._rules import MAX_FUTURE_S, MAX_ITEMS, MAX_KEY_LEN, symbols_valid

_Key = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KEY_LEN)]
_INF = float("inf")
_FLOAT = np.float64


class Item(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One tick as typed on the wire; the checks of values come after, on the columns."""

    symbol: str
    price: float
    ts: float
    volume: float | None = 0.0
    key: _Key | None = msgspec.field(default=None, name="idempotencyKey")


class Body(msgspec.Struct, forbid_unknown_fields=True):
    source: Annotated[str, msgspec.Meta(min_length=1)]
    items: Annotated[list[Item], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]


class LenientItem(Item, forbid_unknown_fields=False, gc=False):
    """``Item`` that ignores fields it does not know (used on what orjson has already parsed)."""


_decoder = msgspec.json.Decoder(Body)
_LENIENT_ITEMS = list[LenientItem]


def typed_body(body: bytes) -> Body | None:
    """The body as typed Structs, or None if it is not JSON of exactly the typed shape."""
    try:
        return _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):  # msgspec.ValidationError is a DecodeError
        return None


def typed_items(items: list[Any]) -> list[Item] | None:
    """Items parsed already (by orjson) as typed Structs, extra fields ignored; None if any does not fit."""
    try:
        return msgspec.convert(items, _LENIENT_ITEMS, strict=True)
    except (msgspec.ValidationError, RecursionError):
        return None


def typed_columns(source: str, items: list[Item], now: float) -> TickColumns | None:
    """The columns of typed items if every value is valid (docs/API.md), else None."""
    symbols = [i.symbol for i in items]
    codes = dict.fromkeys(symbols)
    if not symbols_valid(codes):
        return None
    prices = [i.price for i in items]
    price = np.array(prices, _FLOAT)
    if not (price.min() > 0.0 and price.max() < _INF):
        return None
    times = [i.ts for i in items]
    ts = np.array(times, _FLOAT)
    if not (ts.min() >= 0.0 and ts.max() <= now + MAX_FUTURE_S):
        return None
    volumes = [i.volume for i in items]
    volume = np.array(volumes, _FLOAT)  # a null is NaN here
    low = volume.min()
    if low != low:
        volumes = [0.0 if v is None else v for v in volumes]
        volume = np.array(volumes, _FLOAT)
        low = volume.min()
    if not (low >= 0.0 and volume.max() < _INF):
        return None
    return build_columns(source, symbols, prices, times, volumes, [i.key for i in items], codes,
                         price, ts, volume)


def build_columns(source: str, symbols: list[str], prices: list[float], times: list[float], volumes: list[float],
                  keys: list[str | None], codes: dict[str, Any] | None = None, price: np.ndarray | None = None,
                  ts: np.ndarray | None = None, volume: np.ndarray | None = None) -> TickColumns:
    """Columns of validated ticks: symbol codes in order of first appearance, and each key's digest,
    a key left out (None) being the text ``source:symbol:ts:price:volume`` (the floats' repr)."""
    n = len(symbols)
    distinct = list(dict.fromkeys(symbols) if codes is None else codes)
    index = dict(zip(distinct, range(len(distinct))))
    sym = np.fromiter(map(index.__getitem__, symbols), np.int32, n)
    if None in keys:
        keys = [f"{source}:{s}:{t!r}:{p!r}:{v!r}" if k is None else k
                for k, s, t, p, v in zip(keys, symbols, times, prices, volumes, strict=True)]
    return TickColumns(distinct, sym, np.array(prices, _FLOAT) if price is None else price,
                       np.array(times, _FLOAT) if ts is None else ts,
                       np.array(volumes, _FLOAT) if volume is None else volume, key_digests(keys))
