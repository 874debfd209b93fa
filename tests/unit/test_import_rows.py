"""`candlewick import`'s columns: the webhook's rules and its default keys, row for row."""

from __future__ import annotations


import numpy as np
import orjson
import pyarrow as pa
import pytest

from candlewick.cli._import_rows import _ORJSON_IS_REPR, BadRow, _arrow_texts, check, float_texts, tick_columns
from candlewick.schema import decode_ticks, parse_ts

NOW = 1_800_000_000.0


def batch(**columns) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({name: pa.array(values, type=pa.string()) if name != "_" else values
                                       for name, values in columns.items()})


def test_float_texts_are_python_reprs():
    """The text of each float is repr's, on ~1M values of every magnitude and rounding: orjson's (tiny values
    taking repr itself), and pyarrow's as fixed up should orjson ever write floats otherwise."""
    rng = np.random.default_rng(11)
    n = 200_000
    samples = [
        rng.random(n) * 10.0 ** rng.integers(-9, 20, n),
        np.round(rng.random(n) * 10.0 ** rng.integers(0, 8, n), rng.integers(0, 9)),
        np.round(1.7e9 + rng.random(n) * 1e8, 3),
        rng.integers(0, 2**62, n).astype(np.float64) / 10.0 ** rng.integers(0, 12, n),
        np.array([0.0, -0.0, 1.0, 1e-4, 9.999e-5, 1e15, 1e16, 2.0**53, 5e-324, 1.7976931348623157e308, 0.1, 1e-7]),
    ]
    assert _ORJSON_IS_REPR
    for values in samples:
        want = [repr(v) for v in values.tolist()]
        assert float_texts(values).to_pylist() == want
        assert _arrow_texts(values).to_pylist() == want


def test_default_keys_are_the_webhooks():
    """A row without a key gets the digest the webhook gives the same tick posted without one, under the same
    source; a row with a key gets its key's digest."""
    rows = check(batch(symbol=["BTCUSDT", "ETH-USD", "BTCUSDT"], ts=["1700000000.5", "2023-11-14T22:13:20.25+00:00",
                                                                     "1700000001"],
                       price=["101.50", "3e3", "7"], volume=["0", "1.25", None], key=[None, None, "client-key"]), 0, NOW)
    cols = tick_columns(rows, "import:trades.csv")
    items = [{"symbol": "BTCUSDT", "ts": 1700000000.5, "price": 101.5, "volume": 0.0},
             {"symbol": "ETH-USD", "ts": "2023-11-14T22:13:20.25+00:00", "price": 3000, "volume": 1.25},
             {"symbol": "BTCUSDT", "ts": 1700000001, "price": 7, "idempotencyKey": "client-key"}]
    _, ticks = decode_ticks(orjson.dumps({"source": "import:trades.csv", "items": items}), now=NOW)
    assert [t.key for t in ticks] == [bytes(np.asarray(d, dtype=">u8").tobytes()) for d in cols.digest]
    assert cols.ts.tolist() == [t.ts for t in ticks] and cols.price.tolist() == [t.price for t in ticks]
    assert cols.volume.tolist() == [0.0, 1.25, 0.0]


@pytest.mark.parametrize(("column", "value", "field", "why"), [
    ("symbol", "BTC USD", "symbol", "required, 1-32 characters"),
    ("symbol", None, "symbol", "required, 1-32 characters"),
    ("symbol", "X" * 33, "symbol", "required, 1-32 characters"),
    ("price", "0", "price", "required finite number > 0"),
    ("price", "-1", "price", "required finite number > 0"),
    ("price", "nan", "price", "required finite number > 0"),
    ("price", "abc", "price", "required finite number > 0"),
    ("price", None, "price", "required finite number > 0"),
    ("volume", "-0.5", "volume", "must be a finite number >= 0"),
    ("volume", "inf", "volume", "must be a finite number >= 0"),
    ("ts", "-1", "ts", "must not be before 1970"),
    ("ts", str(NOW + 301), "ts", "is more than 5 minutes in the future"),
    ("ts", str(NOW * 1000), "ts", "looks like milliseconds"),
    ("ts", "2024-01-01T00:00:00", "ts", "needs an offset"),
    ("ts", "yesterday", "ts", "must be epoch seconds or an ISO-8601 timestamp"),
    ("ts", None, "ts", "required"),
    ("key", "k" * 201, "key", "must be a string of 1 to 200 characters"),
])
def test_an_invalid_row_is_named_with_its_field_and_the_webhooks_reason(column, value, field, why):
    """Row 3 of a chunk starting at file row 10 is bad: BadRow names row 13, the field, the value and the rule."""
    good = {"symbol": "BTCUSDT", "ts": "1700000000", "price": "1.5", "volume": "2", "key": "k"}
    columns = {name: [good[name]] * 5 for name in good}
    columns[column][2] = value
    with pytest.raises(BadRow) as caught:
        check(batch(**columns), 10, NOW)
    assert (caught.value.row, caught.value.field, caught.value.value) == (13, field, value)
    assert why in caught.value.why


def test_the_first_invalid_row_is_reported_whatever_the_column():
    """Problems in several columns: the earliest row is the one reported."""
    columns = {"symbol": ["A", "A", "A", "A"], "ts": ["1", "1", "-5", "1"], "price": ["1", "1", "1", "x"],
               "volume": ["1", "-1", "1", "1"]}
    with pytest.raises(BadRow) as caught:
        check(batch(**columns), 0, NOW)
    assert (caught.value.row, caught.value.field) == (2, "volume")


def test_iso_timestamps_are_read_as_the_webhook_reads_them():
    """Offsets, fractions beyond microseconds, week dates and odd offsets pyarrow cannot read: parse_ts's values."""
    texts = ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.123456789+05:30", "2024-01-01 12:00:00-03:00",
             "2024-01-01T00:00:00.9999999Z"]
    odd = ["2024-W01-1T00:00Z", "20240101T000000Z", "2024-01-01T00:00:00+05:30:15"]
    for sample in (texts, texts + odd):
        rows = check(batch(symbol=["S"] * len(sample), ts=sample, price=["1"] * len(sample)), 0, NOW)
        assert rows.ts.tolist() == [parse_ts(t, NOW)[0] for t in sample]


def test_timestamps_of_parquet_need_a_zone():
    """A timestamp column with a zone is read to the microsecond; one without is refused as naive ISO text is."""
    from candlewick.cli._import_rows import BadColumn

    aware = pa.array([1_700_000_000_123_456_789], type=pa.timestamp("ns", tz="UTC"))
    rows = check(pa.RecordBatch.from_pydict({"symbol": ["S"], "ts": aware, "price": [1.0]}), 0, NOW)
    assert rows.ts.tolist() == [1700000000.123456]
    naive = pa.array([1_700_000_000], type=pa.timestamp("s"))
    with pytest.raises(BadColumn):
        check(pa.RecordBatch.from_pydict({"symbol": ["S"], "ts": naive, "price": [1.0]}), 0, NOW)
