"""The store contract: every Store implementation (memory, Postgres) passes this module unchanged."""

from __future__ import annotations

import inspect
import math
import random

import pytest

from candlewick.domain import INTERVALS, bucket_of, interval_bucket
from candlewick.schema import Bar, SymbolInfo, Tick, digest_key
from candlewick.storage import MemoryStore, Store
from tests._reference_book import SymbolBook

T0 = 1_730_425_200


@pytest.fixture(params=["memory", "postgres"])
def store_kind(request):
    return request.param


@pytest.fixture
def store_url(store_kind, request):
    return request.getfixturevalue("pg_url") if store_kind == "postgres" else None


def store_class(kind: str) -> type:
    if kind == "postgres":
        from candlewick.storage.postgres import PostgresStore

        return PostgresStore
    return MemoryStore


@pytest.fixture
async def store(store_kind, store_url, aio):
    cls = store_class(store_kind)
    s = cls(store_url) if store_kind == "postgres" else cls()
    await s.open()
    yield s
    await s.close()


def tick(key, price, ts, volume=1.0, symbol="S"):
    return Tick(str(key), symbol, float(price), float(ts), float(volume))


async def test_latest_is_by_trade_time(store):
    """The latest tick is the one with the greatest trade time, not the last written."""
    await store.write({"S": [tick(1, 10, T0 + 50), tick(2, 11, T0 + 10)]})
    latest = await store.latest("S")
    assert (latest.price, latest.ts) == (10, T0 + 50)
    assert await store.latest("nope") is None


async def test_cursor_walk_visits_every_tick_once_even_within_one_second(store):
    """Walking pages with nextCursor returns each stored tick exactly once, newest first."""
    ticks = [tick(i, 100 + i, T0 + i // 7) for i in range(100)]  # 7 ticks share each second
    await store.write({"S": ticks})
    seen, cursor = [], None
    while True:
        page, cursor = await store.ticks_page("S", cursor, 6)
        seen.extend(page)
        if cursor is None:
            break
    assert sorted(t.price for t in seen) == sorted(t.price for t in ticks)
    assert len(seen) == 100
    assert [t.ts for t in seen] == sorted((t.ts for t in seen), reverse=True)


async def test_numeric_before_is_exclusive(store):
    """before=<epoch> returns only ticks strictly older than it."""
    await store.write({"S": [tick(i, 1 + i, T0 + i) for i in range(10)]})
    page, _ = await store.ticks_page("S", (T0 + 5, -1), 100)
    assert [t.ts for t in page] == [T0 + i for i in range(4, -1, -1)]


async def test_bars_match_the_book(store):
    """The store's bars equal the actor book's for the same ticks in the same order."""
    ticks = [tick(i, 100 + (i * 13) % 17, T0 + (i * 7919) % 900, 0.5) for i in range(300)]
    book = SymbolBook("S")
    book.apply(ticks)
    await store.write({"S": ticks})
    desc = await store.bars_before("S", math.inf, 1000)
    assert [b.bucket for b in desc] == sorted(book.bars, reverse=True)
    for bar in desc:
        assert bar == book.bars[bar.bucket]
    assert [b.bucket for b in await store.bars_before("S", T0 + 300, 2)] == [T0 + 240, T0 + 180]


async def test_window_aggregates_raw_ticks(store):
    """A window aggregates exactly the ticks with since <= ts < until."""
    await store.write({"S": [tick(i, 10 + i, T0 + i, 2.0) for i in range(10)]})
    bar = await store.window("S", T0 + 2, T0 + 5)
    assert (bar.count, bar.low, bar.high, bar.open, bar.close, bar.volume) == (3, 12, 14, 12, 14, 6.0)
    assert await store.window("S", T0 + 100, T0 + 200) is None


async def test_symbols_upsert_and_auto_registration(store):
    """Upserted symbols keep their fields; a symbol seen only in ticks is listed with empty base/quote."""
    await store.upsert_symbols([SymbolInfo("B", "BB", "USD", True), SymbolInfo("C", "CC", "USD", False)])
    await store.write({"A": [tick(1, 1, T0, symbol="A")]})
    active = await store.symbols(True, 10)
    assert [(s.symbol, s.base) for s in active] == [("A", ""), ("B", "BB")]
    assert [s.symbol for s in await store.symbols(False, 10)] == ["A", "B", "C"]


async def test_symbols_pages_in_bytewise_order(store):
    """symbols(limit, after) lists at most ``limit``, after ``after`` (exclusive, present or not), in
    bytewise order (upper case before lower, '/' before digits); new symbols join the order at once."""
    names = ["b", "B", "a/1", "a1", "A", "a:2", "Z.z", "_x"]
    await store.upsert_symbols([SymbolInfo(n, active=n != "a1") for n in names])
    want = sorted(names)  # Python compares code points: bytewise for ASCII
    assert [s.symbol for s in await store.symbols(False, 100)] == want
    for limit in (1, 3, 100):
        for after in [None, "", "a", "zzz", *names]:
            got = [s.symbol for s in await store.symbols(False, limit, after)]
            assert got == [n for n in want if after is None or n > after][:limit], (limit, after)
            got = [s.symbol for s in await store.symbols(True, limit, after)]
            assert got == [n for n in want if n != "a1" and (after is None or n > after)][:limit], (limit, after)
    await store.write({"Y": [tick(1, 1, T0, symbol="Y")]})
    assert [s.symbol for s in await store.symbols(False, 2, "X")] == ["Y", "Z.z"]


async def test_load_book_seeds_keys_and_bars_within_the_horizon(store):
    """A rebuilt book knows the keys since its floor (as the decoder gives them: 16-byte digests)
    and the 9 bars before the floor."""
    ticks = [Tick(digest_key(b"%d" % i), "S", 100.0 + i, T0 + 60.0 * i, 1.0) for i in range(30)]
    await store.write({"S": ticks})
    seed = await store.load_book("S", lateness=300)
    assert seed.max_ts == T0 + 60 * 29
    assert {k for k, _ in seed.keys} == {digest_key(b"%d" % i) for i in range(24, 30)}
    floor_bucket = bucket_of(T0 + 60 * 29 - 300)
    assert [b.bucket for b in seed.bars][0] == floor_bucket - 9 * 60
    empty = await store.load_book("nope", 300)
    assert (empty.bars, empty.keys, empty.max_ts) == ([], [], None)


def test_every_protocol_method_is_implemented_with_its_signature(store_kind):
    """Each store has the protocol's attributes, and every protocol method, async where the
    protocol's is, with the same parameter names, kinds and defaults."""
    cls = store_class(store_kind)
    assert isinstance(cls.name, str) and isinstance(cls.durable, bool)
    methods = {n: f for n, f in vars(Store).items() if inspect.isfunction(f) and not n.startswith("_")}
    assert "outbox_pending" in methods
    for name, proto in methods.items():
        impl = getattr(cls, name)
        assert inspect.iscoroutinefunction(impl) == inspect.iscoroutinefunction(proto), name
        shape = [(p.name, p.kind, p.default) for p in inspect.signature(impl).parameters.values()]
        assert shape == [(p.name, p.kind, p.default) for p in inspect.signature(proto).parameters.values()], name


async def test_outbox_rows_are_pending_until_deleted(store):
    """A durable store keeps a write's outbox row, lists it (oldest first, up to ``limit``) once it is
    ``older_than`` old and forgets it when deleted; the memory store keeps none and lists nothing."""
    first = await store.write({"S": [tick(1, 10, T0)]}, outbox=b'["one"]')
    second = await store.write({"S": [tick(2, 11, T0 + 1)]}, outbox=b'["two"]')
    if not store.durable:
        assert (first, second) == (None, None)
        assert await store.outbox_pending(0) == []
        await store.outbox_delete([1, 2])
        assert await store.outbox_pending(0) == []
        return
    assert await store.outbox_pending(0) == [(first, b'["one"]'), (second, b'["two"]')]
    assert await store.outbox_pending(0, limit=1) == [(first, b'["one"]')]
    assert await store.outbox_pending(3_600) == []
    await store.outbox_delete([first])
    assert await store.outbox_pending(0) == [(second, b'["two"]')]
    assert await store.write({"S": [tick(3, 12, T0 + 2)]}) is None


async def test_memory_retention_by_count_drops_oldest():
    """The memory store never holds more raw ticks than its bound; the oldest go first."""
    store = MemoryStore(max_raw_ticks=50)
    for chunk in range(10):
        await store.write({"S": [tick(f"{chunk}-{i}", 1, T0 + chunk * 10 + i) for i in range(10)]})
    assert store.statistics().raw_ticks == 50
    page, _ = await store.ticks_page("S", None, 1000)
    assert len(page) == 50 and min(t.ts for t in page) == T0 + 50


async def test_memory_retention_by_count_frees_the_memory_of_thin_symbols():
    """The count bound releases memory, not only ticks from view: with many thinly traded symbols
    (a few ticks per write each) the store holds at most twice the live ticks' rows, however long
    it runs, and the keys of forgotten ticks are released at once."""
    store = MemoryStore(max_raw_ticks=2_000)
    for write in range(300):
        await store.write({f"S{s}": [tick(f"{write}-{s}", 1, T0 + write)] for s in range(100)})
    assert store.statistics().raw_ticks == 2_000
    held = store._raw.held()
    assert 2_000 <= held <= 2 * 2_000, held
    live = {f"{w}-{s}" for w in range(280, 300) for s in range(100)}
    assert set(store._raw.other_keys.values()) == live
    page, _ = await store.ticks_page("S7", None, 1000)
    assert [t.ts for t in page] == [T0 + w for w in range(299, 279, -1)]


async def test_memory_retention_by_age():
    """Prune drops raw ticks and bars older than their retention."""
    store = MemoryStore(raw_seconds=100, bar_seconds=200)
    await store.write({"S": [tick(i, 1, T0 + 60 * i) for i in range(10)]})
    await store.prune(T0 + 60 * 9 + 1)
    page, _ = await store.ticks_page("S", None, 1000)
    assert min(t.ts for t in page) >= T0 + 60 * 9 + 1 - 100
    bars = await store.bars_before("S", math.inf, 100)
    assert min(b.bucket for b in bars) >= T0 + 60 * 9 + 1 - 200 - 60


# -- candles of every interval ------------------------------------------------------------------

def reference_candles(ticks: list[Tick], interval: int) -> dict[int, Bar]:
    """The candle rule over each bucket's ticks, one ``Bar.add`` at a time in arrival order."""
    out: dict[int, Bar] = {}
    for t in ticks:
        b = interval_bucket(t.ts, interval)
        if b in out:
            out[b].add(t.price, t.ts, t.volume)
        else:
            out[b] = Bar(b, t.price, t.ts, t.volume)
    return out


def ticks_over_weeks(rng: random.Random, n: int) -> list[Tick]:
    """Trades over about three weeks with holes of hours and days, several per minute at times."""
    out = []
    for i in range(n):
        day = rng.choice([0, 1, 2, 5, 6, 9, 13, 14, 20])
        ts = T0 + day * 86_400 + rng.randrange(0, 86_400, 7) + rng.choice([0.0, 0.25, 0.5])
        out.append(Tick(f"k{i}", "S", float(rng.randrange(90, 120)), ts, rng.choice([0.5, 1.0, 2.0])))
    return out


async def test_candles_of_every_interval(store):
    """``candles`` gives, for every interval (1w from Monday 00:00 UTC), the newest ``limit`` bars
    with bucket < before, newest first, each the candle rule over its ticks; written in batches out
    of time order. (Sums compared to 1e-12: a store may add a bucket's minutes rather than its ticks.)"""
    rng = random.Random(7)
    ticks = ticks_over_weeks(rng, 2_000)
    for i in range(0, len(ticks), 250):
        await store.write({"S": ticks[i:i + 250]})
    last = max(t.ts for t in ticks)
    for interval in INTERVALS.values():
        ref = reference_candles(ticks, interval)
        for before in (math.inf, last, interval_bucket(last, interval), T0 + 5 * 86_400 + 1, T0):
            for limit in (1, 3, 5_000):
                got = await store.candles("S", interval, before, limit)
                want = [ref[b] for b in sorted(ref, reverse=True) if b < before][:limit]
                assert [b.bucket for b in got] == [b.bucket for b in want], (interval, before, limit)
                for g, w in zip(got, want):
                    assert (g.open, g.open_ts, g.high, g.low, g.close, g.close_ts, g.count) == \
                        (w.open, w.open_ts, w.high, w.low, w.close, w.close_ts, w.count), (interval, g, w)
                    assert (g.volume, g.pv, g.psum) == pytest.approx((w.volume, w.pv, w.psum), rel=1e-12)
    weeks = await store.candles("S", 604_800, math.inf, 10)
    assert [b.bucket for b in weeks] == [1_731_888_000, 1_731_283_200, 1_730_678_400, 1_730_073_600]
    assert await store.candles("nope", 3_600, math.inf, 10) == []
    assert await store.candles("S", 60, T0, 10) == []
    with pytest.raises(ValueError):
        await store.candles("S", 120, math.inf, 10)
