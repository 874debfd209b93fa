"""Bounded reads of the Postgres store give what the unbounded ones gave: windows and pages over many minutes."""

from __future__ import annotations

import random
import time

import pytest

from candlewick.schema import Bar, Tick

T0 = (int(time.time()) // 3600 - 6) * 3600


def window_reference(ticks: list[Tick], since: float, until: float) -> Bar | None:
    """``Bar.add`` over the ticks with since <= ts < until, in applied order."""
    bar = None
    for t in ticks:
        if since <= t.ts < until:
            if bar is None:
                bar = Bar(int(since), t.price, t.ts, t.volume)
            else:
                bar.add(t.price, t.ts, t.volume)
    return bar


async def test_windows_over_many_minutes_read_whole_minutes_from_the_1m_candles(store):
    """A window's whole minutes come from ohlc_1m and its partial minutes at either end from raw
    ticks: the result equals the candle rule over the raw ticks, for windows that start and end
    mid-minute, on a minute, inside one minute, across hours, with ties at the edges."""
    rng = random.Random(21)
    ticks = [Tick(f"w{i}", "WN", float(rng.randint(1, 99)), T0 + rng.randint(0, 4 * 3600 * 4) / 4,
                  rng.choice([0.5, 1.0, 2.0])) for i in range(6_000)]
    for i in range(0, len(ticks), 500):
        await store.write({"WN": ticks[i:i + 500]})
    windows = [(T0 + 10.25, T0 + 3 * 3600 + 17.5), (T0 + 60, T0 + 7200), (T0 + 61.5, T0 + 119.75),
               (T0 + 3599.75, T0 + 3660.25), (T0 - 100, T0 + 5 * 3600), (T0 + 7200, T0 + 7200 + 86_400)]
    edge = ticks[100].ts
    windows += [(edge, edge + 600), (edge - 600, edge)]  # a tick exactly on each edge
    for since, until in windows:
        got = await store.window("WN", since, until)
        want = window_reference(ticks, since, until)
        assert (got is None) == (want is None), (since, until)
        if want is None:
            continue
        assert (got.open, got.open_ts, got.high, got.low, got.close, got.close_ts, got.count) == \
            (want.open, want.open_ts, want.high, want.low, want.close, want.close_ts, want.count), (since, until)
        assert (got.volume, got.psum, got.pv) == pytest.approx((want.volume, want.psum, want.pv), rel=1e-12)
    assert await store.window("WN", T0 - 7200, T0 - 3600) is None
    assert await store.window("nope", T0, T0 + 3600) is None


async def test_pages_walk_every_tick_across_partitions(store):
    """A cursor walk across several days of partitions visits every tick once, newest first, with
    ties in trade time in arrival order, and each page is at most its limit."""
    day = 86_400
    base = (int(time.time()) // day - 3) * day
    ticks = [Tick(f"p{i}", "PG", 1.0 + i, base + day - 30 + (i // 3) * 20.0, 1.0) for i in range(600)]
    await store.write({"PG": ticks[:300]})
    await store.write({"PG": ticks[300:]})
    seen, cursor = [], None
    while True:
        page, cursor = await store.ticks_page("PG", cursor, 37)
        assert len(page) <= 37
        seen += page
        if cursor is None:
            break
    assert [t.price for t in seen] == [t.price for t in sorted(ticks, key=lambda t: (-t.ts, -t.price))]
    latest = await store.latest("PG")
    assert (latest.ts, latest.price) == (ticks[-1].ts, ticks[-1].price)
