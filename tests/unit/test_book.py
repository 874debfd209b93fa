"""The sans-IO book: candles by trade time, exact dedupe within the horizon, SMA10, rollups."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candlewick.domain import BookTable, rollup, with_sma
from candlewick.schema import Bar, Tick, key_digests
from tests._reference_book import SymbolBook

T0 = 1_730_425_200  # a minute boundary


def tick(key, price, ts, volume=1.0, symbol="S"):
    return Tick(str(key), symbol, float(price), float(ts), float(volume))


def reference_bars(ticks):
    """Candles computed the plain way: group unique ticks by minute, sort by trade time."""
    seen, groups = set(), {}
    for t in ticks:
        if t.key in seen:
            continue
        seen.add(t.key)
        groups.setdefault(int(t.ts // 60) * 60, []).append(t)
    out = {}
    for bucket, ts in groups.items():
        ordered = sorted(ts, key=lambda t: t.ts)
        out[bucket] = dict(open=ordered[0].price, close=ordered[-1].price, high=max(t.price for t in ts),
                           low=min(t.price for t in ts), count=len(ts), volume=sum(t.volume for t in ts))
    return out


def bar_dict(bar: Bar):
    return dict(open=bar.open, close=bar.close, high=bar.high, low=bar.low, count=bar.count, volume=bar.volume)


def test_open_close_by_trade_time_not_arrival():
    """A late tick with an earlier trade time becomes the open; a later one the close."""
    book = SymbolBook("S")
    book.apply([tick(1, 10, T0 + 30), tick(2, 11, T0 + 40), tick(3, 9, T0 + 5), tick(4, 12, T0 + 59)])
    bar = book.bars[T0]
    assert (bar.open, bar.high, bar.low, bar.close, bar.count) == (9, 12, 9, 12, 4)


def test_ties_open_keeps_first_close_takes_last():
    """Equal trade times: open stays with the first applied tick, close moves to the last."""
    book = SymbolBook("S")
    book.apply([tick(1, 10, T0), tick(2, 20, T0), tick(3, 30, T0)])
    bar = book.bars[T0]
    assert (bar.open, bar.close) == (10, 30)


def test_duplicates_counted_not_applied():
    """A key seen before (in this or an earlier batch) is a duplicate and changes nothing."""
    book = SymbolBook("S")
    first = book.apply([tick("a", 10, T0), tick("a", 99, T0 + 1)])
    assert (len(first.new), first.duplicates) == (1, 1)
    again = book.apply([tick("a", 10, T0)])
    assert (len(again.new), again.duplicates, book.bars[T0].count) == (0, 1, 1)


def test_ticks_behind_the_horizon_are_skipped_not_double_counted():
    """Past the lateness horizon a key may be forgotten, so such ticks are skipped, never re-applied."""
    book = SymbolBook("S", lateness=120)
    book.apply([tick("old", 10, T0)])
    book.apply([tick("new", 11, T0 + 600)])
    out = book.apply([tick("old", 10, T0), tick("older", 5, T0 - 60)])
    assert (out.skipped, out.duplicates, len(out.new)) == (2, 0, 0)
    assert "old" not in book.keys  # the memory was released


def test_max_keys_bounds_memory_by_raising_the_floor():
    """More keys than max_keys: the oldest minutes are forgotten and their ticks become skipped."""
    book = SymbolBook("S", lateness=10**9, max_keys=100)
    book.apply([tick(i, 10, T0 + i) for i in range(300)])  # 300 ticks over 5 minutes
    assert len(book.keys) <= 100
    assert book.apply([tick(0, 10, T0)]).skipped == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 20 * 60), st.integers(0, 3)), min_size=1, max_size=40),
                min_size=1, max_size=12),
       st.integers(60, 400))
def test_remembered_keys_are_exactly_those_above_the_floor(batches, lateness):
    """After every batch, in order or not (late ticks remembered after newer minutes' keys, repeats):
    the book remembers exactly the applied keys whose minute reaches its floor.
    Fewer would double count a retry; more would hold memory the horizon promised to release."""
    book = SymbolBook("S", lateness=lateness)
    applied: dict[str, float] = {}
    n = 0
    for batch in batches:
        ticks = []
        for second, repeat in batch:
            if repeat and applied:  # resend an applied key (its original trade time)
                key = sorted(applied)[(second * 7919) % len(applied)]
                ticks.append(tick(key, 10, applied[key]))
            else:
                n += 1
                ticks.append(tick(f"k{n}", 10, T0 + second))
        for t in book.apply(ticks).new:
            assert t.key not in applied, "a key applied twice"
            applied[t.key] = t.ts
        assert book.keys == {k for k, ts in applied.items() if int(ts // 60) * 60 + 60 > book.floor}


def test_sma10_is_mean_of_last_ten_candle_closes():
    """SMA10 appears at the 10th candle and is the mean of that candle's and the 9 earlier closes."""
    book = SymbolBook("S")
    smas = []
    for m in range(12):
        smas.append(book.apply([tick(m, 100 + m, T0 + 60 * m)]).events[-1][-1])
    assert smas[:9] == [None] * 9
    assert smas[9] == pytest.approx(sum(100 + m for m in range(10)) / 10)
    assert smas[11] == pytest.approx(sum(100 + m for m in range(2, 12)) / 10)


def test_late_tick_into_earlier_candle_reports_that_candles_sma():
    """A late tick updates its own (earlier) candle and the event carries that candle's SMA."""
    book = SymbolBook("S")
    for m in range(12):
        book.apply([tick(m, 100, T0 + 60 * m)])
    ev = book.apply([tick("late", 200, T0 + 60 * 10 + 59)]).events[0]
    assert ev[1] == T0 + 600 and ev[5] == 200  # bucket, close
    assert ev[7] == pytest.approx((9 * 100 + 200) / 10)
    # and the latest candle's SMA now sees the changed close too
    last = book.apply([tick("next", 100, T0 + 60 * 11 + 1)]).events[0]
    assert last[7] == pytest.approx((9 * 100 + 200) / 10)


def test_book_rebuilt_from_seed_continues_identically():
    """A book seeded with bars and keys (an actor restart) dedupes and averages like the original."""
    ticks = [tick(i, 100 + i % 7, T0 + 37 * i) for i in range(60)]
    original = SymbolBook("S")
    original.apply(ticks)
    seed_bars = [original.bars[b].copy() for b in original.order]
    seed_keys = [(t.key, t.ts) for t in ticks]
    rebuilt = SymbolBook("S", bars=seed_bars, keys=seed_keys, max_ts=original.max_ts)
    more = [tick("x", 150, T0 + 37 * 60), tick(5, 1, T0 + 5 * 37)]
    a, b = original.apply(more), rebuilt.apply(more)
    assert a.events == b.events and a.duplicates == b.duplicates == 1


tick_lists = st.lists(
    st.tuples(st.integers(0, 30 * 60 * 1000), st.integers(1, 10_000), st.integers(0, 100)),
    min_size=1, max_size=200, unique_by=lambda x: x[0])


@settings(max_examples=300, deadline=None)
@given(tick_lists, st.randoms(use_true_random=False), st.integers(0, 50))
def test_shuffled_stream_with_duplicates_equals_sorted_stream(raw, rnd, n_dups):
    """Candles from a shuffled stream with injected duplicates equal those of the clean sorted stream."""
    clean = [tick(f"k{ms}", price / 4, T0 + ms / 1000, vol / 8) for ms, price, vol in raw]
    noisy = clean + [rnd.choice(clean) for _ in range(n_dups)]
    rnd.shuffle(noisy)
    a, b = SymbolBook("S"), SymbolBook("S")
    a.apply(sorted(clean, key=lambda t: t.ts))
    out = b.apply(noisy)
    assert out.duplicates == n_dups
    assert a.order == b.order
    for bucket in a.order:
        assert bar_dict(a.bars[bucket]) == pytest.approx(bar_dict(b.bars[bucket]))
        assert bar_dict(a.bars[bucket]) == pytest.approx(reference_bars(clean)[bucket])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(1, 1000, allow_nan=False), min_size=1, max_size=60), st.integers(1, 25))
def test_sma_exact_at_every_page_boundary(closes, page):
    """Paging candles with 9 bars of context gives the same SMA10 as computing over all of them."""
    bars = [Bar(T0 + 60 * i, c, T0 + 60 * i, 1.0) for i, c in enumerate(closes)]
    whole = [sma for _, sma in with_sma(bars, 0)]
    paged = []
    end = len(bars)
    while end > 0:
        start = max(0, end - page)
        ctx = bars[max(0, start - 9):start]
        paged[:0] = [sma for _, sma in with_sma(ctx + bars[start:end], len(ctx))]
        end = start
    expected = [None if i < 9 else sum(closes[i - 9:i + 1]) / 10 for i in range(len(closes))]
    assert paged == whole
    assert whole == pytest.approx(expected)


def test_rollup_merges_minutes_by_trade_time():
    """5m candles take the open of the earliest minute, the close of the latest, sums of the rest."""
    book = SymbolBook("S")
    ticks = [tick(i, 100 + (i * 37) % 11, T0 + 23 * i, 0.5) for i in range(40)]
    random.Random(1).shuffle(ticks)
    book.apply(ticks)
    rolled = rollup([book.bars[b] for b in book.order], 300)
    for bar in rolled:
        members = [t for t in ticks if bar.bucket <= t.ts < bar.bucket + 300]
        first, last = min(members, key=lambda t: t.ts), max(members, key=lambda t: t.ts)
        assert (bar.open, bar.close, bar.count) == (first.price, last.price, len(members))
        assert bar.high == max(t.price for t in members) and bar.volume == pytest.approx(0.5 * len(members))
    assert [b.bucket % 300 for b in rolled] == [0] * len(rolled)


feed_parts = st.lists(  # requests, in trade-time order: (gap ms, price, volume, rare: +1 minute / a repeated key)
    st.lists(st.tuples(st.integers(0, 400), st.integers(1, 400), st.integers(0, 8), st.integers(0, 40)),
             min_size=1, max_size=40),
    min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(feed_parts, st.randoms(use_true_random=False), st.integers(1, 8))
def test_joined_batches_equal_tick_by_tick(parts, rnd, per_batch):
    """Several requests' parts joined into one batch (as the dispatcher applies them, in any arrival
    order) give, through the columnar path, the same events, counts and bars as the per-tick loop
    over the same batch, bit for bit. (The lateness floor is the batch's: it moves after it.)"""
    clock, seq, requests = T0 + 0.25, 0, []
    for part in parts:
        req = []
        for gap_ms, price, vol, rare in part:
            clock += gap_ms / 1000 + (60 if rare == 1 else 0)
            seq += 1
            key = f"k{rnd.randrange(seq)}" if rare == 2 and seq > 1 else f"k{seq}"
            req.append(tick(key, price / 8 + rnd.random(), clock, vol / 4 + rnd.random()))
        requests.append(req)
    rnd.shuffle(requests)
    joined, reference = SymbolBook("S", lateness=600), SymbolBook("S", lateness=600)
    for i in range(0, len(requests), per_batch):
        batch = [t for req in requests[i:i + per_batch] for t in req]
        out, ref = joined.apply(batch), reference._apply_each(batch)
        assert out == ref
        rejected = sorted((out.duplicate_at or []) + (out.skipped_at or []))
        assert [batch[j] for j in range(len(batch)) if j not in rejected] == out.new
    assert joined.order == reference.order
    assert all(joined.bars[b] == reference.bars[b] for b in joined.order)
    assert joined.keys == reference.keys and joined.floor == reference.floor


def test_sma10_adds_closes_left_to_right_as_the_kernel_does():
    """Closes 1e16 then nine 1.0: added left to right each 1.0 is lost to rounding (SMA 1e15); an exact
    sum (``math.fsum``, or ``sum`` from Python 3.12) would give 1e15 + 0.8. The reference, the table and
    a candle page's ``with_sma`` agree on the sequential value."""
    prices = [1e16] + [1.0] * 9
    assert math.fsum(prices) / 10 != 1e15
    book = SymbolBook("S")
    events = [book.apply([tick(i, p, T0 + 60 * i)]).events[0] for i, p in enumerate(prices)]
    assert events[-1].sma10 == 1e15
    batch = SymbolBook("S").apply([tick(i, p, T0 + 60 * i) for i, p in enumerate(prices)])
    assert batch.events[-1].sma10 == 1e15
    table = BookTable()
    table.add("S")
    out = table.apply(np.zeros(10, dtype=np.int32), np.array(prices), T0 + 60.0 * np.arange(10), np.ones(10),
                      key_digests([str(i) for i in range(10)]))
    assert out.sma[-1] == 1e15
    assert with_sma([Bar(T0 + 60 * i, p, T0 + 60 * i, 1.0) for i, p in enumerate(prices)], 9)[0][1] == 1e15
