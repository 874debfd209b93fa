"""The memory store as columns: bit for bit the per-tick candle rule on every interval, pages, windows, bounds."""

from __future__ import annotations

import math
import random
from functools import reduce
from operator import add

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candlewick.domain import INTERVALS, interval_bucket
from candlewick.schema import Bar, Tick, TickColumns, digest_key
from candlewick.storage import MemoryStore
from tests._reference_book import SymbolBook

T0 = 1_730_425_200.0


def reference(ticks: list[Tick], interval: int) -> dict[tuple[str, int], Bar]:
    """Every (symbol, bucket) candle: ``Bar.add`` of its ticks one at a time, in arrival order."""
    out: dict[tuple[str, int], Bar] = {}
    for t in ticks:
        k = (t.symbol, interval_bucket(t.ts, interval))
        if k in out:
            out[k].add(t.price, t.ts, t.volume)
        else:
            out[k] = Bar(k[1], t.price, t.ts, t.volume)
    return out


async def assert_candles_exact(store: MemoryStore, applied: list[Tick]) -> None:
    for interval in INTERVALS.values():
        ref = reference(applied, interval)
        for symbol in {t.symbol for t in applied}:
            got = await store.candles(symbol, interval, math.inf, 100_000)
            want = [ref[k] for k in sorted((k for k in ref if k[0] == symbol), key=lambda k: -k[1])]
            assert got == want, (symbol, interval)


def split(ticks: list[Tick], cuts: list[int]) -> list[list[Tick]]:
    bounds = sorted({0, len(ticks), *(c % (len(ticks) + 1) for c in cuts)})
    return [ticks[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def as_mapping(part: list[Tick]) -> dict[str, list[Tick]]:
    out: dict[str, list[Tick]] = {}
    for t in part:
        out.setdefault(t.symbol, []).append(t)
    return out


tick_lists = st.lists(
    st.tuples(st.sampled_from(["A", "B", "C"]),
              st.integers(0, 40),  # minute offset: late and out-of-order ticks, ties
              st.sampled_from([0.0, 0.5, 59.999]),
              st.floats(0.01, 1e6, allow_nan=False, allow_infinity=False),
              st.sampled_from([0.0, 0.1, 1 / 3, 2.5, 1e-9])),
    min_size=1, max_size=120)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tick_lists, st.lists(st.integers(0, 200), max_size=6), st.booleans())
async def test_every_interval_equals_the_per_tick_rule_bit_for_bit(rows, cuts, columns):
    """Shuffled, tied, late batches over three symbols, written as mappings or as columns: every
    candle of every interval equals ``Bar.add`` of its ticks in arrival order, every field exactly;
    the 1m candles equal the book's."""
    ticks = [Tick(f"k{i}", s, p, T0 + 60 * m + f + 604_800 * (m % 3), v) for i, (s, m, f, p, v) in enumerate(rows)]
    store = MemoryStore()
    applied: list[Tick] = []
    for part in split(ticks, cuts):
        batch = as_mapping(part)
        applied += [t for ts in batch.values() for t in ts]  # arrival order as the store sees it
        await store.write(TickColumns.from_ticks(part) if columns else batch)
    if columns:
        applied = [t for part in split(ticks, cuts) for t in part]
    await assert_candles_exact(store, applied)
    for symbol in {t.symbol for t in applied}:
        book = SymbolBook(symbol, lateness=1e12)
        book.apply([t for t in applied if t.symbol == symbol])
        assert await store.bars_before(symbol, math.inf, 10_000) == [book.bars[b] for b in reversed(book.order)]


async def test_long_and_short_bars_in_one_write_are_exact():
    """One write holding a bar of 5,000 ticks beside 2,000 bars of one tick (the fold's two ways
    of adding: a rank at a time, and each long bar on its own), with sums that round."""
    rng = random.Random(3)
    hot = [Tick(f"h{i}", "HOT", 100 + rng.random(), T0 + rng.random() * 59, rng.random() / 3) for i in range(5_000)]
    thin = [Tick(f"t{i}", f"T{i}", 1 + rng.random(), T0 + i % 600, 0.1) for i in range(2_000)]
    store = MemoryStore()
    await store.write({"HOT": hot[:7], **as_mapping(thin)})
    await store.write({"HOT": hot[7:]})
    [bar] = await store.candles("HOT", 60, math.inf, 10)
    assert bar.volume == reduce(add, (t.volume for t in hot)) and bar.psum == reduce(add, (t.price for t in hot))
    assert bar.pv == reduce(add, (t.price * t.volume for t in hot))
    assert await store.candles("T1999", 3_600, math.inf, 5) == [Bar(interval_bucket(T0 + 1_999 % 600, 3_600),
                                                                     thin[-1].price, thin[-1].ts, 0.1)]


def test_cumsum_adds_left_to_right():
    """What the fold and ``window`` rely on: ``np.cumsum`` is the left-to-right sum (not pairwise)."""
    x = np.random.default_rng(5).random(10_000) * 1e3
    assert np.cumsum(x)[-1] == reduce(add, x.tolist())
    assert np.cumsum(np.stack((x, x[::-1])), axis=1)[1, -1] == reduce(add, x[::-1].tolist())


async def test_pages_walk_every_live_tick_once_through_eviction_and_pruning():
    """With the count bound and age retention cutting into the runs, a cursor walk still returns
    every live tick once, newest first by (ts, seq), and the count is what the bounds leave."""
    rng = random.Random(11)
    store = MemoryStore(max_raw_ticks=700, raw_seconds=1_000)
    written = []
    for w in range(40):
        part = [Tick(f"{w}-{i}", "S", float(i), T0 + rng.randrange(0, 1_500), 1.0) for i in range(50)]
        await store.write({"S": part, "X": part[:3]})
        written += part
    await store.prune(T0 + 1_200)
    live = store.statistics().raw_ticks
    assert 0 < live <= 700
    seen, cursor = [], None
    while True:
        page, cursor = await store.ticks_page("S", cursor, 37)
        seen += page
        if cursor is None:
            break
    assert [(t.ts, t.seq) for t in seen] == sorted(((t.ts, t.seq) for t in seen), reverse=True)
    assert len({t.seq for t in seen}) == len(seen)
    assert all(t.ts >= T0 + 200 for t in seen)
    x = (await store.ticks_page("X", None, 1_000))[0]
    assert len(seen) + len(x) == live


async def test_window_is_the_candle_rule_over_the_raw_ticks_in_time_order():
    rng = random.Random(2)
    ticks = [Tick(f"w{i}", "W", 1 + rng.random(), T0 + rng.randrange(0, 300), rng.random()) for i in range(2_000)]
    store = MemoryStore()
    for i in range(0, 2_000, 300):
        await store.write({"W": ticks[i:i + 300]})
    inside = sorted((t for t in ticks if T0 + 17 <= t.ts < T0 + 250), key=lambda t: t.ts)  # stable: seq on ties
    want = Bar(int(T0 + 17), inside[0].price, inside[0].ts, inside[0].volume)
    for t in inside[1:]:
        want.add(t.price, t.ts, t.volume)
    assert await store.window("W", T0 + 17, T0 + 250) == want


async def test_load_book_returns_each_key_as_given():
    """Digest keys (16 bytes, from the decoder, or from columns) come back as those 16 bytes; any
    other key (tests build ticks by hand) as it was given."""
    store = MemoryStore()
    digests = [digest_key(f"d{i}".encode()) for i in range(5)]
    await store.write({"S": [Tick(d, "S", 1.0, T0 + i, 1.0) for i, d in enumerate(digests)]})
    await store.write({"S": [Tick("plain", "S", 1.0, T0 + 10, 1.0), Tick(b"short", "S", 1.0, T0 + 11, 1.0)]})
    await store.write(TickColumns.from_ticks([Tick("col", "S", 1.0, T0 + 12, 1.0)]))
    seed = await store.load_book("S", lateness=100)
    assert [k for k, _ in seed.keys] == [*digests, "plain", b"short", digest_key(b"col")]
    assert [ts for _, ts in seed.keys] == [T0 + i for i in (0, 1, 2, 3, 4, 10, 11, 12)]
    assert seed.max_ts == T0 + 12


async def test_no_object_per_tick_or_candle():
    """Raw ticks and candles live in numpy arrays: 20,000 ticks over 2,000 minutes of 10 symbols
    leave no Python object per tick or per candle behind (digest keys)."""
    import gc

    store = MemoryStore()
    gc.collect()
    before = len(gc.get_objects())
    for w in range(20):
        part = [Tick(digest_key(f"{w}-{i}".encode()), f"S{i % 10}", 1.0 + i, T0 + 60 * (w * 100 + i // 10), 1.0)
                for i in range(1_000)]
        await store.write(as_mapping(part))
        del part
    gc.collect()
    assert len(gc.get_objects()) - before < 500
    stats = store.statistics()
    assert (stats.raw_ticks, stats.bars) == (20_000, 20_000)


async def test_rows_read_by_a_page_are_bounded_by_its_limit():
    """However much is stored, a page of candles of any interval or of raw ticks gathers O(limit)
    rows: the store's ``rows_read`` statistic grows by at most (runs + 1) x (limit + 1)."""
    store = MemoryStore(max_raw_ticks=10**7)
    for w in range(60):
        await store.write({"S": [Tick(f"{w}-{i}", "S", 1.0, T0 + 30 * (w * 1_000 + i), 1.0) for i in range(1_000)]})
    runs = len(store._raw.runs) + len(store._bars.runs)
    for interval in INTERVALS.values():
        before = store.statistics().rows_read
        got = await store.candles("S", interval, math.inf, 20)
        assert len(got) == 20 or interval == 604_800  # 3 weeks stored
        assert store.statistics().rows_read - before <= (runs + 1) * 21
    before = store.statistics().rows_read
    page, cursor = await store.ticks_page("S", None, 20)
    assert len(page) == 20 and cursor is not None
    assert store.statistics().rows_read - before <= (runs + 1) * 21


async def test_retention_floors_per_interval():
    """Prune keeps 1m candles for bar_seconds and longer candles for 2,000 of their intervals."""
    store = MemoryStore(bar_seconds=3_600)
    await store.write({"S": [Tick(f"k{i}", "S", 1.0, T0 + 3_600 * i, 1.0) for i in range(48)]})
    await store.prune(T0 + 3_600 * 47 + 1)
    assert [b.bucket for b in await store.candles("S", 60, math.inf, 100)] == [T0 + 3_600 * 47]
    assert len(await store.candles("S", 300, math.inf, 100)) == 48  # 2,000 x 5 min > 48 h
    assert len(await store.candles("S", 3_600, math.inf, 100)) == 48


@pytest.mark.parametrize("interval", sorted(INTERVALS.values()))
def test_interval_buckets_agree(interval):
    from candlewick.domain import interval_buckets

    ts = np.array([0.0, 345_599.5, 345_600.0, T0, T0 + 0.999, 1_731_888_000.0 - 1e-6, 1_731_888_000.0])
    assert interval_buckets(ts, interval).tolist() == [float(interval_bucket(t, interval)) for t in ts.tolist()]
