"""The Postgres store's columnar write: merge rows by numpy equal the candle rule, columns in = ticks in."""

from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest

from candlewick.domain import bucket_of
from candlewick.schema import Bar, Tick, TickColumns, digest_key, key_digests
from candlewick.storage._pg_columns import INTERVAL_OFFSETS, Bars, bucket_start, columns_of, key_order, time_order
from candlewick.storage.postgres import PostgresStore
from tests.integration.test_pg_faults import assert_aggregates_match_raw, sql

T0 = (int(time.time()) // 3600 - 2) * 3600


def tie_heavy(rng: random.Random, n: int, symbols: list[str]) -> list[Tick]:
    """Out of time order, many exact ties in trade time, several minutes and hours per symbol."""
    return [Tick(f"t{i}", rng.choice(symbols), float(rng.randint(1, 60)), T0 + rng.randint(0, 500) * 7.5,
                 float(rng.randint(0, 8)) / 4) for i in range(n)]


def reference(ticks: list[Tick], interval: int) -> dict[tuple[str, int], Bar]:
    """``Bar.add`` one tick at a time in applied order, per (symbol, bucket of the interval)."""
    out: dict[tuple[str, int], Bar] = {}
    for t in ticks:
        minute = bucket_of(t.ts)
        b = int(bucket_start(np.array([minute]), interval)[0])
        key = (t.symbol, b)
        if key in out:
            out[key].add(t.price, t.ts, t.volume)
        else:
            out[key] = Bar(b, t.price, t.ts, t.volume)
    return out


def test_merge_rows_follow_the_candle_rule_for_every_interval():
    """Per (symbol, bucket), for 1m and every rollup: open of the earliest trade (first applied on a
    tie), close of the latest (last applied on a tie), high, low and count exactly; sums to 1e-12.
    Rows come in lock order: symbol id, then bucket (here the id is the column's code)."""
    rng = random.Random(11)
    symbols = ["b", "A", "a", "ÄX", "B"]
    ticks = tie_heavy(rng, 4_000, symbols)
    cols = columns_of({s: [t for t in ticks if t.symbol == s] for s in symbols})
    applied = [t for s in symbols for t in ticks if t.symbol == s]  # the order the columns hold them in
    sym = cols.sym.astype(np.int32)
    minutes = Bars.minutes(sym, cols.price, cols.ts, cols.volume, time_order(sym, cols.ts))
    for interval in INTERVAL_OFFSETS:
        bars = minutes if interval == 60 else minutes.rollup(interval)
        want = reference(applied, interval)
        got_keys = [(cols.symbols[s], b) for s, b in zip(bars.symbol_id.tolist(), bars.bucket.tolist(), strict=True)]
        assert got_keys == sorted(want, key=lambda k: (symbols.index(k[0]), k[1])), interval
        for i, key in enumerate(got_keys):
            w = want[key]
            assert (bars.open[i], bars.open_ts[i], bars.high[i], bars.low[i], bars.close[i], bars.close_ts[i],
                    bars.count[i]) == (w.open, w.open_ts, w.high, w.low, w.close, w.close_ts, w.count), (interval, key)
            assert (bars.volume[i], bars.psum[i], bars.pv[i]) == pytest.approx((w.volume, w.psum, w.pv), rel=1e-12)


def test_raw_rows_go_in_by_symbol_id_trade_time_and_key():
    """The insertion order every writer uses: (symbol id, trade time, key digest), whatever the
    applied order; ties in trade time are broken by the key, not by arrival."""
    rng = random.Random(13)
    ticks = tie_heavy(rng, 3_000, ["K1", "K2", "K3"])
    cols = columns_of({s: [t for t in ticks if t.symbol == s] for s in ("K3", "K1", "K2")})
    ids = np.array([30, 10, 20], dtype=np.int32)[cols.sym]
    order = key_order(time_order(ids, cols.ts), ids, cols.ts, cols.digest)
    got = [(int(ids[i]), float(cols.ts[i]), int(cols.digest[i, 0]), int(cols.digest[i, 1])) for i in order]
    assert got == sorted(got)
    assert sorted(order.tolist()) == list(range(len(ticks)))


async def test_columns_and_ticks_write_the_same_rows(aio, pg_url):
    """A batch written as ``TickColumns`` (digest column, symbol codes) stores what the same ticks
    written as per-symbol lists do: raw rows, 1m candles and rollups; keys are the digests of the
    client keys either way, and 16-byte digests in ``Tick.key`` are taken as they are."""
    rng = random.Random(12)
    ticks = tie_heavy(rng, 2_000, ["L1", "L2"])
    store = PostgresStore(pg_url)
    await store.open()
    try:
        as_lists = {"L1": [t for t in ticks if t.symbol == "L1"],
                    "L2": [t._replace(key=digest_key(t.key.encode())) for t in ticks if t.symbol == "L2"]}
        await store.write(as_lists)
        renamed = [t._replace(symbol="C" + t.symbol) for s in ("L1", "L2") for t in as_lists[s]]
        names = ["CL1", "CL2"]
        cols = TickColumns(names, np.array([names.index(t.symbol) for t in renamed], dtype=np.int32),
                           np.array([t.price for t in renamed]), np.array([t.ts for t in renamed]),
                           np.array([t.volume for t in renamed]),
                           key_digests([t.key if isinstance(t.key, str) else "" for t in renamed]))
        cols.digest[len(as_lists["L1"]):] = np.frombuffer(b"".join(t.key for t in as_lists["L2"]),
                                                          dtype=">u8").reshape(-1, 2)
        await store.write(cols)
        assert store.fast_writes == 2
        for s in ("L1", "L2"):
            raw = await sql(pg_url, "SELECT idempotency_key, price, ts, volume, seq FROM ticks WHERE symbol = $1 "
                                    "ORDER BY seq", s)
            col = await sql(pg_url, "SELECT idempotency_key, price, ts, volume, seq FROM ticks WHERE symbol = $1 "
                                    "ORDER BY seq", "C" + s)
            assert [tuple(r)[:4] for r in raw] == [tuple(r)[:4] for r in col]
            assert {bytes(r[0]) for r in raw} == {digest_key(t.key.encode()) for t in ticks if t.symbol == s}
            for interval in INTERVAL_OFFSETS:
                assert await store.candles(s, interval, math.inf, 5_000) == \
                    await store.candles("C" + s, interval, math.inf, 5_000), (s, interval)
        await store.write(cols)  # a replay of the columns: the exact path, nothing changes
        assert store.exact_writes == 1
        [[count]] = await sql(pg_url, "SELECT count(*) FROM ticks_raw")
        assert count == 2 * len(ticks)
        await assert_aggregates_match_raw(pg_url)
    finally:
        await store.close()


async def test_a_key_that_is_neither_text_nor_a_digest_is_refused(aio, pg_url):
    store = PostgresStore(pg_url)
    await store.open()
    try:
        with pytest.raises(ValueError):
            await store.write({"K": [Tick(b"short", "K", 1.0, T0, 1.0)]})
    finally:
        await store.close()
