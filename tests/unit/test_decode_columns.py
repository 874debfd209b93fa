"""The columnar tick decoder agrees with the item-by-item reference: same ticks bit for bit, or same errors.

``reference`` below is the decoder as it was before columns (orjson, then one loop over the items
with JSON paths), kept here as the specification. Bodies are written as JSON text by hand, so that
they can hold what a serializer never writes: integers beyond 64 bits, exponents, ``-0``,
duplicate fields, escapes, extra fields, invalid UTF-8 and byte-level damage.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candlewick.errors import CandlewickError, MalformedJSON, ValidationFailed
from candlewick.schema import SYMBOL_RE, Tick, _columns, _decode, decode_tick_columns, decode_ticks, digest_key, parse_ts
from candlewick.schema._decode import MAX_DETAILS, MAX_ITEMS, MAX_KEY_LEN, parse_json

NOW = 1_730_425_260.0


# -- the reference ------------------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def reference(body: bytes, now: float) -> tuple[str, list[Tick]]:
    """The tick decoder before columns, item by item (its fast path was held equal to this loop)."""
    doc = parse_json(body)
    errors: list[dict[str, str]] = []

    def bad(path: str, message: str) -> None:
        if len(errors) < MAX_DETAILS:
            errors.append({"path": path, "message": message})

    if not isinstance(doc, dict):
        raise ValidationFailed("body must be a JSON object", [{"path": "$", "message": "must be an object"}])
    source = doc.get("source")
    if not isinstance(source, str) or not source:
        bad("$.source", "required non-empty string")
        source = ""
    items = doc.get("items")
    if not isinstance(items, list):
        bad("$.items", "required array of 1 to 10000 ticks")
        items = []
    elif not 1 <= len(items) <= MAX_ITEMS:
        bad("$.items", f"must hold 1 to {MAX_ITEMS} ticks, got {len(items)}")
        items = []
    ticks: list[Tick] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            bad(f"$.items[{i}]", "must be an object")
            continue
        ok = True
        symbol = item.get("symbol")
        if not isinstance(symbol, str) or SYMBOL_RE.fullmatch(symbol) is None:
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
            if key is None:
                key = f"{source}:{symbol}:{ts!r}:{p!r}:{v!r}"
            ticks.append(Tick(digest_key(key.encode()), symbol, p, ts, v))
    if errors:
        raise ValidationFailed(f"{len(errors)} invalid field(s); nothing was applied", errors)
    return source, ticks


# -- comparing ----------------------------------------------------------------------------------------
def exact(ticks: list[Tick]) -> list[tuple]:
    """Ticks with their floats as bits (so -0.0 and 0.0 differ)."""
    return [(t.key, t.symbol, struct.pack("<3d", t.price, t.ts, t.volume)) for t in ticks]


def outcome(decode, raw: bytes) -> tuple:
    try:
        source, ticks = decode(raw, NOW)
    except CandlewickError as exc:
        return "error", type(exc), str(exc), getattr(exc, "details", None)
    return "ok", source, exact(ticks)


def columns_as_ticks(raw: bytes, now: float) -> tuple[str, list[Tick]]:
    """``decode_tick_columns``, checked for the columns' own form, then as ticks."""
    source, cols = decode_tick_columns(raw, now)
    n = len(cols)
    assert cols.keys is None and cols.digest.shape == (n, 2) and cols.digest.dtype == np.uint64
    assert cols.sym.dtype == np.int32 and all(a.dtype == np.float64 for a in (cols.price, cols.ts, cols.volume))
    codes = cols.sym.tolist()
    assert len(set(cols.symbols)) == len(cols.symbols) and sorted(set(codes)) == list(range(len(cols.symbols)))
    firsts = [codes.index(c) for c in range(len(cols.symbols))]
    assert firsts == sorted(firsts)  # codes in order of first appearance
    return source, cols.to_ticks()


def loop_only(raw: bytes, now: float) -> tuple[str, list[Tick]]:
    """The decoder's own item-by-item loop, without the typed attempts."""
    source, cols = _decode._checked_columns(raw, now, common=False)
    return source, cols.to_ticks()


def agree(raw: bytes) -> tuple:
    """Every way of decoding ``raw`` has the reference's outcome; that outcome."""
    expected = outcome(reference, raw)
    assert outcome(columns_as_ticks, raw) == expected
    assert outcome(decode_ticks, raw) == expected
    assert outcome(loop_only, raw) == expected
    return expected


# -- generated JSON text ------------------------------------------------------------------------------
def text(s: str) -> st.SearchStrategy[str]:
    """A JSON string for ``s``, as UTF-8 or with every non-ASCII character escaped."""
    return st.sampled_from([orjson.dumps(s).decode(), json.dumps(s)])


floats = st.floats(allow_nan=False, allow_infinity=False).map(lambda f: orjson.dumps(f).decode())
numbers = st.one_of(
    floats, st.integers(-(2**70), 2**70).map(str), st.sampled_from(["-0", "-0.0", "0", "1e-400", "-1e-400", "1E2", "1e+2",
                                                                     "1.5e309", "1" + "0" * 400, "18446744073709551616"]),
    st.from_regex(r"-?(0|[1-9][0-9]{0,22})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True))
odd_values = st.sampled_from(["true", "false", "null", "[]", "{}", '"1.5"', '"x"', "[1]", '{"a": NaN}'])
fine_numbers = st.from_regex(r"[1-9][0-9]{0,8}(\.[0-9]{1,20})?([eE][+-]?[0-9])?", fullmatch=True)
# (valid values, anything): a clean body draws only from the first, a damaged one from both
VALUES = {
    "symbol": (st.sampled_from(["BTCUSDT", "ETH-USD", "a.b/c:d_e", "S" * 32, "Z"]),
               st.sampled_from(["", "BTC USD", "X" * 33, "Ä", "BTC\n", "é" * 3, "\u212a"])),
    "price": (st.one_of(st.floats(1e-9, 1e9).map(lambda f: orjson.dumps(f).decode()), st.integers(1, 2**70).map(str),
                        fine_numbers), st.one_of(numbers, odd_values)),
    "ts": (st.one_of(st.floats(0, NOW + 300).map(lambda f: orjson.dumps(f).decode()),
                     st.sampled_from(["1730425200", "0", "-0", "-0.0", "0e5", repr(NOW + 300), '"2024-11-01T01:40:00+00:00"',
                                      '"2024-11-01T01:40:00Z"'])),
           st.one_of(numbers, odd_values, st.sampled_from([repr(NOW + 300.5), "1730425200000", "-1e-9",
                                                           '"2024-11-01T01:40:00"', '"yesterday"']))),
    "volume": (st.one_of(st.floats(0, 1e6).map(lambda f: orjson.dumps(f).decode()),
                         st.sampled_from(["null", "0", "-0", "-0.0", "1e-400", "-1e-400"]), fine_numbers),
               st.one_of(numbers, odd_values)),
    "idempotencyKey": (st.sampled_from(["k", "k" * 200, "feed:BTC:7", "ключ", "😀" * 200, "a\u0000b"]),
                       st.one_of(st.sampled_from(["", "k" * 201, "😀" * 201]), st.text(max_size=5))),
}
STRINGS = {"symbol", "idempotencyKey"}


def value(name: str, clean: bool) -> st.SearchStrategy[str]:
    good, anything = VALUES[name]
    good = good.flatmap(text) if name in STRINGS else good
    if name == "idempotencyKey":
        good = st.one_of(good, st.just("null"))
    if clean:
        return good
    return st.one_of(good, good, good, anything.flatmap(text) if name in STRINGS else anything)


@st.composite
def item_text(draw, clean: bool) -> str:
    """One item as JSON text, in any accepted shape: volume or key left out, fields in any order,
    extra fields. A clean item is valid but for the trade time (which the clock may refuse); others
    may have a field left out, odd, or repeated."""
    names = ["symbol", "price", "ts"] + [n for n in ("volume", "idempotencyKey") if draw(st.booleans())]
    fields = [(n, draw(value(n, clean))) for n in names]
    for _ in range(draw(st.sampled_from([0] * 7 + [1]) if clean else st.integers(0, 2))):
        change = draw(st.sampled_from(["extra"] if clean else ["drop", "odd", "repeat", "extra"]))
        i = draw(st.integers(0, len(fields) - 1))
        if change == "drop":
            fields.pop(i)
            if not fields:
                break
        elif change == "odd":
            fields[i] = (fields[i][0], draw(odd_values))
        elif change == "repeat":
            fields.insert(draw(st.integers(0, len(fields))), (fields[i][0], draw(st.one_of(numbers, odd_values))))
        else:
            fields.insert(draw(st.integers(0, len(fields))), (draw(st.sampled_from(["side", "venue", "é"])), draw(
                st.one_of(fine_numbers, st.sampled_from(["true", "null", "[]", '{"a": [1.5]}', '"x"'])) if clean else
                st.one_of(numbers, odd_values, st.text(max_size=3).flatmap(text)))))
    return "{" + ",".join(f'"{k}":{v}' for k, v in (fields if clean else draw(st.permutations(fields)))) + "}"


@st.composite
def body_text(draw) -> bytes:
    """A body as JSON text: half of them clean (every item valid), half with defects anywhere."""
    clean = draw(st.booleans())
    item = item_text(clean)
    items = draw(st.lists(item if clean else st.one_of(item, item, item, odd_values), min_size=1, max_size=6))
    sources = st.sampled_from(["s", "feed:1", "ä"]).flatmap(text)
    top = [("source", draw(sources if clean else st.one_of(sources, st.sampled_from(['""', "null", "1"])))),
           ("items", "[" + ",".join(items) + "]")]
    if draw(st.integers(0, 5)) == 0:
        top.insert(draw(st.integers(0, 2)), (draw(st.sampled_from(["meta"] if clean else ["meta", "items", "source"])),
                                             draw(fine_numbers if clean else st.one_of(numbers, odd_values))))
    if not clean and draw(st.integers(0, 9)) == 0:
        top.pop(draw(st.integers(0, len(top) - 1)))
    return ("{" + ",".join(f'"{k}":{v}' for k, v in top) + "}").encode()


@settings(max_examples=600, deadline=None)
@given(body_text())
def test_columns_agree_with_the_reference(raw):
    """Generated bodies, valid and not, in every shape: the same ticks bit for bit or the same errors."""
    agree(raw)


@settings(max_examples=300, deadline=None)
@given(body_text(), st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(
    [b"", b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\x00", b"\\ud800", b'"', b",", b"}", b"]", b"e9", b"0", b" ", b"NaN",
     b"\xe2\x82"])), min_size=1, max_size=3), st.integers(0, 3))
def test_damaged_bytes_agree_with_the_reference(raw, damage, cut):
    """Bodies with bytes replaced, inserted or removed (invalid UTF-8, broken escapes, broken
    structure) are refused or accepted alike, with the same errors."""
    data = bytearray(raw)
    for at, piece in damage:
        at %= len(data) + 1
        data[at:at + cut % 2] = piece
    agree(bytes(data))


# -- shapes the typed decoder must take itself --------------------------------------------------------
COMMON = [
    b'{"source":"s","items":[{"symbol":"A","price":1.5,"ts":1730425200.5,"volume":0.25,"idempotencyKey":"k"}]}',
    b'{"source":"s","items":[{"symbol":"A","price":2,"ts":1730425200}]}',
    b'{"source":"s","items":[{"symbol":"A","price":2,"ts":1730425200,"volume":null,"idempotencyKey":null}]}',
    b'{"source":"s","items":[{"idempotencyKey":"\\u00e9\xc3\xa9","symbol":"A","price":1e2,"ts":0,"volume":-0.0}]}',
    b'{"source":"s","items":[{"symbol":"A","price":1,"ts":1,"volume":-0}, {"symbol":"B","price":1,"ts":1,"volume":0}]}',
]


@pytest.mark.parametrize("raw", COMMON)
def test_common_shapes_take_the_typed_decoder(raw):
    """Numbers of any form, null or absent volume and key, unicode keys: the typed decoder alone."""
    typed = _columns.typed_body(raw)
    assert typed is not None
    assert _columns.typed_columns(typed.source, typed.items, NOW) is not None
    agree(raw)


def test_extra_fields_take_the_typed_conversion():
    """Extra fields are allowed: the body goes through orjson (the strictness of the contract),
    then the same typed Structs, ignoring them."""
    raw = b'{"source":"s","v":2,"items":[{"symbol":"A","price":1,"ts":1,"side":"buy","x":[{"y":1e300}]}]}'
    assert _columns.typed_body(raw) is None
    assert _decode._common_columns("s", orjson.loads(raw)["items"], NOW) is not None
    assert agree(raw)[0] == "ok"


@pytest.mark.parametrize("raw", [
    b'{"source":"s","x":1' + b"0" * 400 + b',"items":[{"symbol":"A","price":1,"ts":1}]}',
    b'{"source":"s","items":[{"symbol":"A","price":1,"ts":1,"x":1e400}]}',
    b'{"source":"s","items":[{"symbol":"A","price":1,"ts":1,"x":"\xff"}]}',
    b'{"source":"s","items":[{"symbol":"A","price":1,"ts":1,"\xc0\x80":1}]}',
    b'{"source":"s","items":[{"symbol":"A","price":1,"ts":1,"x":"\xed\xa0\x80"}]}',
    b'{"source":"s\xff","items":[{"symbol":"A","price":1,"ts":1}]}',
    b'{"source":"s","items":[{"symbol":"A","price":1,"ts":1,"idempotencyKey":"\xf4\x90\x80\x80"}]}',
    b'{"source":"s","items":[{"symbol":"A","price":1,"ts":1,"idempotencyKey":"\\udc00"}]}',
    b'{"source":"s","items":[{"symbol":"A","price":1,"ts":1,"x":"\\ud800"}]}',
    b'{"source":"s","items":[{"symbol":"A","price":1,"ts":1,"x":' + b"[" * 1100 + b"]" * 1100 + b"}]}",
    b'{"source":"s","items":[{"symbol":"A","price":1,"ts":1,"x":NaN}]}',
    b'{"source":"s","items":[{"symbol":"A","price":1,"ts":1}]} x',
    b'\xef\xbb\xbf{"source":"s","items":[{"symbol":"A","price":1,"ts":1}]}',
])
def test_what_orjson_refuses_stays_malformed(raw):
    """Whatever the typed decoder would skip or tolerate, the contract's JSON rules still hold:
    numbers that overflow a double, invalid UTF-8 and lone surrogates anywhere, depth, NaN."""
    with pytest.raises(MalformedJSON):
        decode_tick_columns(raw, NOW)
    agree(raw)


def test_invalid_values_name_their_paths_from_the_loop():
    """Past the typed decoder, an invalid body gets the loop's details, capped at MAX_DETAILS."""
    items = [{"symbol": "A", "price": -1, "ts": 1}] * 60
    with pytest.raises(ValidationFailed) as exc:
        decode_tick_columns(orjson.dumps({"source": "s", "items": items}), NOW)
    assert len(exc.value.details) == MAX_DETAILS
    assert exc.value.details[3] == {"path": "$.items[3].price", "message": "required finite number > 0"}


def test_columns_of_many_symbols_and_keys():
    """Codes follow first appearance; digests are those of the client's key or the default text."""
    raw = orjson.dumps({"source": "s", "items": [
        {"symbol": f"S{i % 7}", "price": 1.0 + i, "ts": 1_730_425_200 + i, **({"idempotencyKey": f"k{i}"} if i % 2 else {})}
        for i in range(20)]})
    _, cols = decode_tick_columns(raw, NOW)
    assert cols.symbols == [f"S{i}" for i in range(7)] and cols.sym.tolist() == [i % 7 for i in range(20)]
    keys = [f"k{i}" if i % 2 else f"s:S{i % 7}:{1_730_425_200.0 + i!r}:{1.0 + i!r}:0.0" for i in range(20)]
    assert [bytes(t.key) for t in cols.to_ticks()] == [digest_key(k.encode()) for k in keys]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.floats(0, 1e-3), st.floats(1e15, 1e17),
                          st.integers(-(2**60), 2**60).map(float)), min_size=1, max_size=8))
def test_default_key_floats_are_their_repr(values):
    """The default key text has each float's repr, whichever way the decoder writes it."""
    assert _columns.float_texts(values, np.array(values)) == [repr(v) for v in values]
    assert _columns._ORJSON_IS_REPR
