"""The decoder's hot path for common-shape bodies agrees with the full item-by-item checks."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candlewick.errors import CandlewickError
from candlewick.schema import Tick, _decode, decode_ticks

NOW = 1_730_425_260.0

floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0.0, -0.0, 1.5, NOW, NOW + 300,
                                                                                      NOW + 300.5, 1e12]))
values = st.one_of(floats, st.integers(-5, 2_000_000_000_000), st.booleans(), st.none(), st.just("2024-11-01T01:40:00Z"),
                   st.text(max_size=3))
symbols = st.one_of(st.sampled_from(["BTCUSDT", "ETH-USD", "a.b/c:d_e", "", "BTC USD", "X" * 33, "Ä"]), st.integers(-9, 9))
keys = st.one_of(st.none(), st.sampled_from(["k", "k" * 200, "k" * 201, ""]), st.integers(0, 3))


@st.composite
def items(draw):
    """Mostly valid items of every accepted shape (int, ISO, absent or null fields too); some
    with one field replaced by anything."""
    item = {"symbol": draw(st.sampled_from(["BTCUSDT", "ETH-USD", "a.b/c:d_e"])),
            "price": draw(st.one_of(st.floats(1e-9, 1e9), st.floats(1e-9, 1e9), st.integers(1, 10**6))),
            "ts": draw(st.one_of(st.floats(0, NOW + 300), st.floats(0, NOW + 300),
                                 st.sampled_from([0.0, NOW + 300, 1_730_425_200, "2024-11-01T01:40:00+00:00"])))}
    volume = draw(st.one_of(st.floats(0, 1e6), st.floats(0, 1e6), st.sampled_from([None, 0, -0.0, "absent"])))
    if volume != "absent":
        item["volume"] = volume
    key = draw(keys) if draw(st.integers(0, 11)) == 0 else draw(st.sampled_from([None, "k", "k" * 200, "feed:BTC:7"]))
    if key is not None or draw(st.booleans()):
        item["idempotencyKey"] = key
    if draw(st.integers(0, 11)) == 0:
        field = draw(st.sampled_from(["symbol", "price", "ts", "volume", "idempotencyKey", None]))
        if field is None:
            return draw(st.sampled_from([1, "x", None, []]))
        change = draw(st.sampled_from(["any", "null", "absent"]))
        if change == "absent":
            item.pop(field, None)
        else:
            item[field] = draw(st.one_of(symbols, values)) if change == "any" else None
    return item


def decode_both(raw: bytes):
    outcomes = []
    for common in (True, False):
        original = _decode._common_ticks
        if not common:
            _decode._common_ticks = lambda *a: None
        try:
            outcomes.append(("ok", decode_ticks(raw, now=NOW)))
        except CandlewickError as exc:
            outcomes.append(("error", type(exc), str(exc), getattr(exc, "details", None)))
        finally:
            _decode._common_ticks = original
    return outcomes


@settings(max_examples=400, deadline=None)
@given(st.lists(items(), min_size=1, max_size=6), st.sampled_from(["s", "feed:1"]))
def test_hot_path_equals_the_full_checks(batch, source):
    """Every body decodes to the same ticks (or the same errors) with and without the hot path."""
    fast, full = decode_both(orjson.dumps({"source": source, "items": batch}))
    assert fast == full
    if fast[0] == "ok":
        assert all(type(t) is Tick for t in fast[1][1])


@pytest.mark.parametrize("item", [
    {"symbol": "A", "price": 1.5, "ts": NOW, "volume": 0.25},
    {"symbol": "A", "price": 1.5, "ts": NOW},
    {"symbol": "A", "price": 1.5, "ts": NOW + 300.0, "volume": -0.0, "idempotencyKey": "k"},
])
def test_common_shapes_take_the_hot_path(item):
    """Float price, ts and volume (or no volume) are decoded by the hot path, to the same ticks."""
    raw = orjson.dumps({"source": "s", "items": [item, item]})
    doc = orjson.loads(raw)
    assert _decode._common_ticks("s", doc["items"], NOW) is not None
    fast, full = decode_both(raw)
    assert fast == full and fast[0] == "ok"
