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

import struct
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson

from candlewick.schema._batch import TickColumns
from candlewick.schema._digest import key_digests
from candlewick.schema._rules import MAX_FUTURE_S, MAX_ITEMS, MAX_KEY_LEN, MAX_SYMBOL_LEN, symbol_chars_valid

_Key = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KEY_LEN)]
_Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SYMBOL_LEN)]  # its characters: on the columns
_INF = float("inf")
_DTYPES = {"d": np.dtype(np.float64), "i": np.dtype(np.int32)}


class Item(msgspec.Struct, forbid_unknown_fields=True, gc=False, kw_only=True):
    """One tick as typed on the wire; values are checked after, on the columns. The fields are
    declared in the order of docs/API.md's example, which msgspec decodes fastest."""

    key: _Key | None = msgspec.field(default=None, name="idempotencyKey")
    symbol: _Symbol
    price: float
    ts: float
    volume: float | None = 0.0


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
    index = dict.fromkeys(symbols)
    if not symbol_chars_valid(index):
        return None
    prices = [i.price for i in items]
    price = column(prices, "d")
    times = [i.ts for i in items]
    ts = column(times, "d")
    volumes = [i.volume for i in items]
    try:
        volume = column(volumes, "d")
    except struct.error:  # a null volume is 0
        volumes = [0.0 if v is None else v for v in volumes]
        volume = column(volumes, "d")
    if not (price.min() > 0.0 and price.max() < _INF and ts.min() >= 0.0 and ts.max() <= now + MAX_FUTURE_S
            and volume.min() >= 0.0 and volume.max() < _INF):
        return None
    return _columns(source, symbols, index, prices, times, volumes, [i.key for i in items], price, ts, volume)


def build_columns(source: str, symbols: list[str], prices: list[float], times: list[float], volumes: list[float],
                  keys: list[str | None]) -> TickColumns:
    """Columns of validated ticks: symbol codes in order of first appearance, and each key's digest,
    a key left out (None) being the text ``source:symbol:ts:price:volume`` (the floats' repr)."""
    return _columns(source, symbols, dict.fromkeys(symbols), prices, times, volumes, keys,
                    column(prices, "d"), column(times, "d"), column(volumes, "d"))


def column(values: list[Any], code: str) -> np.ndarray:
    """``values`` as a numpy array of struct type ``code`` ("d" float64, "i" int32): packed by
    ``struct`` straight into the array, at a fraction of ``np.fromiter``'s cost per value."""
    out = np.empty(len(values), _DTYPES[code])
    struct.pack_into(f"={len(values)}{code}", out, 0, *values)
    return out


def _columns(source: str, symbols: list[str], index: dict[str, Any], prices: list[float], times: list[float],
             volumes: list[float], keys: list[str | None], price: np.ndarray, ts: np.ndarray,
             volume: np.ndarray) -> TickColumns:
    index.update(zip(index, range(len(index))))  # values only: the keys, and so the iteration, stay
    sym = column(list(map(index.__getitem__, symbols)), "i")
    try:
        digest = key_digests(keys)
    except TypeError:  # a key left out
        texts = zip(symbols, float_texts(times, ts), float_texts(prices, price), float_texts(volumes, volume), strict=True)
        digest = key_digests([f"{source}:{s}:{t}:{p}:{v}" for s, t, p, v in texts] if keys.count(None) == len(keys) else
                             [f"{source}:{s}:{t}:{p}:{v}" if k is None else k for k, (s, t, p, v) in zip(keys, texts)])
    return TickColumns(list(index), sym, price, ts, volume, digest)


def float_texts(values: list[float], column: np.ndarray) -> list[str]:
    """``repr`` of each of ``values`` (``column`` holds the same), as the default key text has them.

    orjson writes a float as ``repr`` does, except between 0 and 1e-4 (``1e-05`` is ``0.00001``
    there), and several times faster; ``_ORJSON_IS_REPR`` checks that this still holds of the
    installed orjson, tests/unit/test_decode_columns.py of any float."""
    if _ORJSON_IS_REPR and not ((np.abs(column) < _REPR_SMALL) & (column != 0.0)).any():
        return orjson.dumps(values).decode()[1:-1].split(",")
    return list(map(repr, values))


_REPR_SMALL = 1e-4
_REPR_SAMPLES = [0.0, -0.0, 1e-4, -1e-4, 0.1, 1.5, 2.0, 100.14285714285714, 1730425200.0, 1730425200.123, 123456789.12345679,
                 999999999999999.9, 1e15, 1e16, 1.2345678901234567e16, 1e22, 1.7976931348623157e308, -2.5e-3, 7e200]
_ORJSON_IS_REPR = orjson.dumps(_REPR_SAMPLES).decode() == "[" + ",".join(map(repr, _REPR_SAMPLES)) + "]"
