"""Decoding the webhook bodies: all-or-nothing validation with JSON paths."""

from __future__ import annotations

import orjson
import pytest

from candlewick.errors import MalformedJSON, ValidationFailed
from candlewick.schema import DIGEST_BYTES, decode_symbols, decode_ticks, digest_key

NOW = 1_730_425_260.0


def body(items, source="s"):
    return orjson.dumps({"source": source, "items": items})


def good(**kw):
    return {"symbol": "BTCUSDT", "price": 1.5, "ts": 1_730_425_200, "volume": 0.25, **kw}


def paths(exc):
    return [d["path"] for d in exc.value.details]


def test_good_body_decodes_with_default_key():
    """Without an idempotencyKey the key is source:symbol:ts:price:volume (distinct trades stay distinct)."""
    _, ticks = decode_ticks(body([good(), good(price=1.6)]), now=NOW)
    assert [t.key for t in ticks] == [digest_key(b"s:BTCUSDT:1730425200.0:1.5:0.25"),
                                      digest_key(b"s:BTCUSDT:1730425200.0:1.6:0.25")]
    assert all(len(t.key) == DIGEST_BYTES for t in ticks)


def test_iso_timestamp_with_offset_and_default_volume():
    """ISO-8601 with an offset is accepted; volume defaults to 0."""
    item = good(ts="2024-11-01T01:40:00+00:00")
    del item["volume"]
    _, [t] = decode_ticks(body([item]), now=NOW)
    assert (t.ts, t.volume) == (1_730_425_200.0, 0.0)


@pytest.mark.parametrize("field,value,path", [
    ("price", -1, "$.items[1].price"), ("price", 0, "$.items[1].price"), ("price", "1", "$.items[1].price"),
    ("price", True, "$.items[1].price"), ("volume", -0.1, "$.items[1].volume"),
    ("symbol", "BTC USD", "$.items[1].symbol"), ("symbol", "X" * 33, "$.items[1].symbol"),
    ("symbol", "", "$.items[1].symbol"), ("ts", "2024-11-01T01:40:00", "$.items[1].ts"),
    ("ts", "yesterday", "$.items[1].ts"), ("ts", None, "$.items[1].ts"),
    ("idempotencyKey", "k" * 201, "$.items[1].idempotencyKey"), ("idempotencyKey", 7, "$.items[1].idempotencyKey"),
])
def test_one_bad_field_rejects_the_whole_body_with_its_path(field, value, path):
    """Any invalid item rejects the body, naming the exact JSON path."""
    with pytest.raises(ValidationFailed) as exc:
        decode_ticks(body([good(), good(**{field: value})]), now=NOW)
    assert paths(exc) == [path]


def test_millisecond_timestamp_gets_a_helpful_message():
    """A ts in milliseconds is rejected with a message saying so."""
    with pytest.raises(ValidationFailed) as exc:
        decode_ticks(body([good(ts=1_730_425_200_000)]), now=NOW)
    assert "milliseconds" in exc.value.details[0]["message"]


def test_future_timestamp_rejected():
    """More than five minutes in the future is rejected."""
    with pytest.raises(ValidationFailed):
        decode_ticks(body([good(ts=NOW + 301)]), now=NOW)
    decode_ticks(body([good(ts=NOW + 299)]), now=NOW)


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b'{"source":"s","items":[{"price":NaN}]}',
                                 b'{"a": Infinity}', b"[" * 5000 + b"]" * 5000])
def test_malformed_json(raw):
    """Broken JSON, NaN/Infinity literals, invalid UTF-8 and absurd nesting are MALFORMED_JSON."""
    with pytest.raises(MalformedJSON):
        decode_ticks(raw, now=NOW)


@pytest.mark.parametrize("doc,path", [([], "$"), ({"items": [good()]}, "$.source"), ({"source": "s"}, "$.items"),
                                      ({"source": "s", "items": []}, "$.items"),
                                      ({"source": "s", "items": [good()] * 10_001}, "$.items"),
                                      ({"source": "s", "items": [1]}, "$.items[0]")])
def test_shape_errors(doc, path):
    """Wrong top-level shapes name their path."""
    with pytest.raises(ValidationFailed) as exc:
        decode_ticks(orjson.dumps(doc), now=NOW)
    assert paths(exc)[0] == path


def test_huge_numbers_are_rejected_not_crashing():
    """Integers beyond float range are invalid prices, not a crash."""
    with pytest.raises((ValidationFailed, MalformedJSON)):
        decode_ticks(b'{"source":"s","items":[{"symbol":"A","price":1' + b"0" * 400 + b',"ts":1}]}', now=NOW)


def test_symbols_body():
    """Symbols decode through the cattrs converter; bad fields name their path."""
    [s] = decode_symbols(orjson.dumps({"items": [{"symbol": "ETHUSDT", "base": "ETH", "quote": "USDT"}]}))
    assert (s.symbol, s.base, s.quote, s.active) == ("ETHUSDT", "ETH", "USDT", True)
    with pytest.raises(ValidationFailed) as exc:
        decode_symbols(orjson.dumps({"items": [{"symbol": "ok"}, {"symbol": "ok", "active": "yes"}]}))
    assert paths(exc) == ["$.items[1].active"]
