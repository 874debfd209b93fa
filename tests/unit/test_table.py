"""BookTable equals one per-tick SymbolBook per symbol, bit for bit: statuses, events, bars, floors, keys."""

from __future__ import annotations

import math
import struct
from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from candlewick.domain import DUPLICATE, NEW, SKIPPED, BookTable
from candlewick.schema import Bar, Tick, digest_key, digests_from_bytes
from tests._reference_book import SymbolBook

T0 = 1_730_425_200.0  # a minute boundary
FIELDS = ("open", "open_ts", "high", "low", "close", "close_ts", "volume", "pv", "psum")


def key(k: int) -> bytes:
    return digest_key(f"key-{k}".encode())


def bits(x: float | None) -> bytes:
    return struct.pack("<d", math.nan if x is None else x)


def bar_bits(bar: Bar) -> tuple:
    return (bar.bucket, bar.count, *(bits(getattr(bar, f)) for f in FIELDS))


class Pair:
    """The table and the reference (one SymbolBook per symbol) fed the same batches."""

    def __init__(self, symbols: int, lateness: float, max_keys: int, seeds: dict[int, SimpleNamespace]) -> None:
        self.table = BookTable(lateness=lateness, max_keys=max_keys)
        self.books = []
        for s in range(symbols):
            seed = seeds.get(s)
            kw = {} if seed is None else dict(bars=[b.copy() for b in seed.bars], keys=seed.keys, max_ts=seed.max_ts)
            self.books.append(SymbolBook(f"S{s}", lateness=lateness, max_keys=max_keys, **kw))
            assert self.table.add(f"S{s}", seed) == s
        self.check_state()

    def apply(self, ticks: list[tuple[int, int, float, float, float]]) -> None:
        """``ticks``: (symbol, key, price, ts, volume) in arrival order."""
        status = [None] * len(ticks)
        events: dict[int, tuple] = {}
        for s, book in enumerate(self.books):
            at = [i for i, t in enumerate(ticks) if t[0] == s]
            if not at:
                continue
            applied = book._apply_each([Tick(key(ticks[i][1]), f"S{s}", *ticks[i][2:]) for i in at])
            dups, skips = set(applied.duplicate_at or ()), set(applied.skipped_at or ())
            new_at = [i for k, i in enumerate(at) if k not in dups and k not in skips]
            for k, i in enumerate(at):
                status[i] = DUPLICATE if k in dups else SKIPPED if k in skips else NEW
            assert len(new_at) == len(applied.events)
            for i, ev in zip(new_at, applied.events, strict=True):
                events[i] = (ev.bucket, *(bits(x) for x in (ev.open, ev.high, ev.low, ev.close, ev.volume, ev.sma10)))
        out = self.table.apply(np.array([t[0] for t in ticks], dtype=np.int32), np.array([t[2] for t in ticks]),
                               np.array([t[3] for t in ticks]), np.array([t[4] for t in ticks]),
                               digests_from_bytes(b"".join(key(t[1]) for t in ticks)))
        assert out.status.tolist() == status
        assert out.new.tolist() == sorted(events)
        got = [(int(b), *(bits(x) for x in vals)) for b, *vals in
               zip(out.bucket.tolist(), out.open.tolist(), out.high.tolist(), out.low.tolist(), out.close.tolist(),
                   out.volume.tolist(), out.sma.tolist(), strict=True)]
        assert got == [events[i] for i in sorted(events)]
        self.check_state()

    def check_state(self) -> None:
        for s, book in enumerate(self.books):
            assert [bar_bits(b) for b in self.table.bars(s)] == [bar_bits(book.bars[b]) for b in book.order], s
            assert self.table.keys(s) == len(book.keys)
            assert bits(self.table.floor(s)) == bits(book.floor)
            assert bits(self.table.max_ts(s)) == bits(book.max_ts)
        assert self.table.live_keys == sum(len(b.keys) for b in self.books)


def history_seed(ticks: list[tuple[int, float, float, float]], lateness: float) -> SimpleNamespace:
    """What a store gives a restarting symbol after these ticks (key, price, ts, volume; all new):
    its bars, the keys of the ticks at or after the newest trade time minus lateness, that time."""
    bars: dict[int, Bar] = {}
    for k, p, t, v in ticks:
        b = math.floor(t / 60) * 60
        if b in bars:
            bars[b].add(p, t, v)
        else:
            bars[b] = Bar(b, p, t, v)
    max_ts = max(t for _, _, t, _ in ticks)
    keys = [(key(k), t) for k, _, t, _ in ticks if t >= max_ts - lateness]
    return SimpleNamespace(bars=[bars[b] for b in sorted(bars)], keys=keys, max_ts=max_ts)


prices = st.one_of(st.sampled_from([10.0, 10.5, 11.0, 9.25]), st.floats(min_value=0.01, max_value=1e6))
volumes = st.one_of(st.sampled_from([0.0, 1.0, 2.5]), st.floats(min_value=0.0, max_value=1e4))
offsets = st.one_of(st.sampled_from([0.0, 30.0, 59.999, 60.0, 61.0, 119.0, 600.0]),  # ties and boundaries
                    st.floats(min_value=0.0, max_value=1500.0))


@st.composite
def scenarios(draw):
    symbols = draw(st.integers(1, 6))
    lateness = draw(st.sampled_from([120.0, 300.0, 3600.0]))
    max_keys = draw(st.sampled_from([5, 12, 100_000]))
    keys = draw(st.integers(3, 60))  # a small pool: the same key again, in and across batches and symbols
    seeds = {}
    for s in range(symbols):
        if draw(st.booleans()):
            hist = draw(st.lists(st.tuples(prices, offsets, volumes), min_size=1, max_size=40))
            seeds[s] = history_seed([(1000 + s * 100 + i, p, T0 + t, v) for i, (p, t, v) in enumerate(hist)], lateness)
    drift = draw(st.lists(st.floats(min_value=0.0, max_value=900.0), min_size=1, max_size=6))
    batches = []
    for shift in drift:
        batch = draw(st.lists(st.tuples(st.integers(0, symbols - 1), st.integers(0, keys), prices, offsets, volumes),
                              max_size=50))
        batches.append([(s, k, p, T0 + shift + t, v) for s, k, p, t, v in batch])
    return symbols, lateness, max_keys, seeds, batches


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_table_equals_one_book_per_symbol(scenario):
    """Random batches over several symbols (shuffled trade times, keys again in and across batches
    and symbols, ties, late ticks into older bars and below the floor, the key cap, seeded starts):
    every status, every event field, and after each batch every bar, floor and key count are the
    reference's, bit for bit."""
    symbols, lateness, max_keys, seeds, batches = scenario
    pair = Pair(symbols, lateness, max_keys, seeds)
    for batch in batches:
        pair.apply(batch)


def test_many_symbols_in_one_batch():
    """300 symbols, most with a tick or two per batch, some with bursts and late ticks: as the reference."""
    rng = np.random.default_rng(3)
    pair = Pair(300, 600.0, 100_000, {})
    for step in range(12):
        n = 1500
        sym = np.where(rng.random(n) < 0.3, rng.integers(0, 5, n), rng.integers(0, 300, n))
        ts = T0 + step * 45.0 + rng.random(n) * 70.0 - np.where(rng.random(n) < 0.05, rng.random(n) * 900.0, 0.0)
        ticks = [(int(s), int(k), float(p), float(t), float(v)) for s, k, p, t, v in
                 zip(sym, rng.integers(0, 20_000, n), rng.random(n) * 100 + 1, np.round(ts, 1), rng.random(n), strict=True)]
        pair.apply(ticks)
