"""Every read route is bounded: each request asks the store for O(limit) rows, however much it holds.

The routes run in-process (the app's test client) over a real memory store subclass that records
each call it serves; a read that fell back to paging through 1-minute candles, or to aggregating a
day of raw ticks, would make more calls, with larger limits, and gather more rows than these bounds.
"""

from __future__ import annotations

import json

import pytest

from candlewick.domain import SMA_N
from candlewick.engine import Engine
from candlewick.http._app import create_app
from candlewick.schema import SymbolInfo, Tick
from candlewick.storage import MemoryStore
from tests.conftest import make_config

DAYS = 30


class RecordingStore(MemoryStore):
    """A memory store that notes each read call: (method, rows it may return)."""

    def __init__(self) -> None:
        super().__init__(max_raw_ticks=10**7, raw_seconds=1e12, bar_seconds=1e12)
        self.calls: list[tuple[str, float]] = []

    async def candles(self, symbol, interval, before, limit):
        self.calls.append(("candles", limit))
        return await super().candles(symbol, interval, before, limit)

    async def bars_before(self, symbol, before, limit):
        self.calls.append(("bars_before", limit))
        return await super().bars_before(symbol, before, limit)

    async def ticks_page(self, symbol, before, limit):
        self.calls.append(("ticks_page", limit))
        return await super().ticks_page(symbol, before, limit)

    async def symbols(self, active_only, limit, after=None):
        self.calls.append(("symbols", limit))
        return await super().symbols(active_only, limit, after)

    async def window(self, symbol, since, until):
        self.calls.append(("window", until - since))  # seconds of raw ticks, not rows
        return await super().window(symbol, since, until)


@pytest.fixture(scope="module")
def filled() -> RecordingStore:
    """30 days of trades for one symbol, one every 20 s (129,600 ticks, 43,200 minutes), ending now;
    written once for the module (reads change nothing but the statistics)."""
    import time

    store = RecordingStore()
    end = time.time() - 1
    start = end - DAYS * 86_400
    n = DAYS * 86_400 // 20
    for lo in range(0, n, 10_000):
        store.write_now({"S": [Tick(f"k{i}", "S", 100.0 + i % 37, start + 20 * i, 1.0)
                               for i in range(lo, min(n, lo + 10_000))]})
    return store


@pytest.fixture
def loaded(filled):
    filled.calls.clear()
    return filled, create_app(Engine(make_config(), filled)).test_client()


async def get(client, path: str, **params) -> dict:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    r = await client.get(f"{path}?{query}" if query else path)
    assert r.status_code == 200, await r.get_data()
    return json.loads(await r.get_data())


@pytest.mark.parametrize("params", [
    {"view": "ohlc1m", "limit": 2000}, {"interval": "1d", "limit": 2000}, {"interval": "1h", "limit": 2000},
    {"interval": "1w", "limit": 2000}, {"interval": "5m", "limit": 7}, {"interval": "1d", "limit": 3, "fill": "prev"},
    {"interval": "4h", "limit": 2000, "fill": "prev"}, {"view": "ohlc1m", "limit": 2000, "fill": "prev"}])
async def test_candle_reads_ask_for_limit_plus_ten(loaded, params):
    """A candle page is at most 2 store calls (fill=prev: the newest candle, then the page), each for
    at most limit + 10 candles, and gathers at most (runs + 1) x (limit + 10) rows."""
    store, client = loaded
    store.calls.clear()
    rows = store.statistics().rows_read
    body = await get(client, "/api/v1/ticks/S/history", **params)
    limit = params["limit"]
    assert 0 < len(body["items"]) <= limit
    assert [m for m, _ in store.calls] in (["candles"], ["candles", "candles"])
    assert all(n <= limit + SMA_N for _, n in store.calls), store.calls
    runs = len(store._raw.runs) + len(store._bars.runs)
    assert store.statistics().rows_read - rows <= (runs + 1) * (limit + SMA_N) * len(store.calls)


async def test_raw_pages_and_metrics_are_bounded(loaded):
    """A raw page asks for at most 1,000 ticks; the latest metrics read one candle; a day's window
    reads whole minutes as at most 1,440 candles and raw ticks for under a minute at each end."""
    store, client = loaded
    store.calls.clear()
    rows = store.statistics().rows_read
    page = await get(client, "/api/v1/ticks/S/history", limit=5000)
    assert len(page["items"]) == 1000 and store.calls == [("ticks_page", 1000)]
    store.calls.clear()
    await get(client, "/api/v1/metrics/S")
    assert store.calls == [("candles", 1)]
    store.calls.clear()
    day = await get(client, "/api/v1/metrics/S", window=86_400)
    assert day["count"] == 86_400 // 20 or abs(day["count"] - 86_400 // 20) <= 1
    assert sorted(m for m, _ in store.calls) == ["candles", "window", "window"]
    assert all(n < 60 for m, n in store.calls if m == "window")
    assert all(n <= 1_440 for m, n in store.calls if m == "candles")
    assert store.statistics().rows_read - rows < 3 * (1_000 + 1_440) * (len(store._raw.runs) + len(store._bars.runs))


async def test_window_from_minutes_equals_the_raw_aggregate(loaded):
    """The bounded window (whole minutes from candles, the ends from raw ticks) is the raw ticks'
    aggregate over the same span, every field (these sums are exact in any order)."""
    from candlewick.http._read import window_bar

    store, _ = loaded
    latest = (await store.latest("S")).ts
    for since, until in ((latest - 86_400 + 0.5, latest + 1e-6), (latest - 3_600, latest - 1_800 + 30),
                         (latest - 100, latest - 50), (latest - 7_201.25, latest - 60.5)):
        got, want = await window_bar(store, "S", since, until), await store.window("S", since, until)
        assert got == want, (since, until)
    assert await window_bar(store, "S", latest + 10, latest + 700) is None


class CountingDict(dict):
    """A dict that counts the rows read from it (``[]``) and the walks over it."""

    reads = walks = 0

    def __getitem__(self, key):
        self.reads += 1
        return super().__getitem__(key)

    def __iter__(self):
        self.walks += 1
        return super().__iter__()


async def test_symbols_pages_are_bounded():
    """GET /api/v1/symbols asks the store for limit + 1 symbols (the default and the cap: 10,000), and a
    memory store reads that many rows, not every symbol; a fuller page links to the next."""
    store = RecordingStore()
    store._symbols = CountingDict(store._symbols)
    await store.upsert_symbols([SymbolInfo(f"S{i:05d}", active=i % 3 > 0) for i in range(25_000)])
    client = create_app(Engine(make_config(), store)).test_client()
    r = await client.get("/api/v1/symbols")
    assert r.status_code == 200 and store.calls == [("symbols", 10_001)]
    assert len(json.loads(await r.get_data())) == 10_000
    assert r.headers["Link"].startswith("</api/v1/symbols?active=true&limit=10000&after=S")
    store.calls.clear()
    reads, walks = store._symbols.reads, store._symbols.walks
    r = await client.get("/api/v1/symbols?limit=5&after=S20000&active=false")
    page = [s["symbol"] for s in json.loads(await r.get_data())]
    assert page == [f"S{i:05d}" for i in range(20_001, 20_006)] and store.calls == [("symbols", 6)]
    assert r.headers["Link"] == '</api/v1/symbols?active=false&limit=5&after=S20005>; rel="next"'
    assert (store._symbols.reads - reads, store._symbols.walks - walks) == (6, 0)
    r = await client.get("/api/v1/symbols?after=S24990")
    assert [s["symbol"] for s in json.loads(await r.get_data())] == [f"S{i:05d}" for i in range(24_991, 25_000)
                                                                      if i % 3]
    assert "Link" not in r.headers
