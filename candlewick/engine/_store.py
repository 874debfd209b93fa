"""The Store protocol and the embedded in-memory store (bounded retention).

Both stores receive the same thing from the flusher: per-symbol lists of ticks the symbol
actors have already deduped, in applied order. A store merges them into 1-minute bars with
the same ``Bar`` arithmetic the actors use, so live state and history agree exactly.

The memory store keeps raw ticks columnar (arrays of floats, a list of keys): about 110 bytes
per tick, so the default 2,000,000 raw ticks fit in ~220 MB.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import attrs

from candlewick.engine._book import BUCKET, SMA_N, bucket_of
from candlewick.schema import Bar, SymbolInfo, Tick

Cursor = tuple[float, int]
"""A position in a symbol's raw ticks: (trade time, arrival sequence); walks are exclusive."""


@attrs.frozen
class RawTick:
    symbol: str
    price: float
    ts: float
    volume: float
    seq: int


@attrs.frozen
class BookSeed:
    """What a (re)starting symbol actor needs to rebuild its book."""

    bars: list[Bar]
    keys: list[tuple[str, float]]
    max_ts: float | None


class Store(Protocol):
    """What the engine needs from storage. Implemented by MemoryStore and PostgresStore."""

    name: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def check(self) -> bool:
        """True when the store answers now (readiness)."""
        ...
    async def write(self, batch: Mapping[str, Sequence[Tick]]) -> None:
        """Commit new ticks (already deduped by the actors) and merge them into the bars."""
        ...
    async def prune(self, now: float) -> None:
        """Apply retention."""
        ...
    async def upsert_symbols(self, items: Sequence[SymbolInfo]) -> int: ...
    async def symbols(self, active_only: bool) -> list[SymbolInfo]: ...
    async def latest(self, symbol: str) -> RawTick | None: ...
    async def ticks_page(self, symbol: str, before: Cursor | None, limit: int) -> tuple[list[RawTick], Cursor | None]:
        """Raw ticks newest first strictly before ``before``, and the cursor of the next page."""
        ...
    async def bars_before(self, symbol: str, before: float, limit: int) -> list[Bar]:
        """Up to ``limit`` 1m bars with bucket < ``before``, newest first."""
        ...
    async def window(self, symbol: str, since: float, until: float) -> Bar | None:
        """One bar aggregating the raw ticks with since <= ts < until."""
        ...
    async def load_book(self, symbol: str, lateness: float) -> BookSeed: ...


class _Raw:
    """One symbol's raw ticks, sorted by (ts, seq), with a lazily trimmed front."""

    __slots__ = ("ts", "seq", "price", "volume", "keys", "start")

    def __init__(self) -> None:
        self.ts = array("d")
        self.seq = array("q")
        self.price = array("d")
        self.volume = array("d")
        self.keys: list[str] = []
        self.start = 0

    def __len__(self) -> int:
        return len(self.ts) - self.start

    def insert(self, tick: Tick, seq: int) -> None:
        ts = self.ts
        if not ts or tick.ts >= ts[-1]:
            ts.append(tick.ts)
            self.seq.append(seq)
            self.price.append(tick.price)
            self.volume.append(tick.volume)
            self.keys.append(tick.key)
        else:
            i = bisect_right(ts, tick.ts, lo=self.start)
            ts.insert(i, tick.ts)
            self.seq.insert(i, seq)
            self.price.insert(i, tick.price)
            self.volume.insert(i, tick.volume)
            self.keys.insert(i, tick.key)

    def index(self, cursor: Cursor) -> int:
        """First index at or after ``cursor``."""
        ts, seq = cursor
        i = bisect_left(self.ts, ts, lo=self.start)
        n = len(self.ts)
        while i < n and self.ts[i] == ts and self.seq[i] < seq:
            i += 1
        return i

    def drop_front(self, n: int) -> None:
        self.start += min(n, len(self))
        if self.start > 4096 and self.start * 2 > len(self.ts):
            s = self.start
            del self.ts[:s], self.seq[:s], self.price[:s], self.volume[:s], self.keys[:s]
            self.start = 0

    def raw(self, symbol: str, i: int) -> RawTick:
        return RawTick(symbol, self.price[i], self.ts[i], self.volume[i], self.seq[i])


class MemoryStore:
    """The embedded default: everything in this process, bounded by count and age."""

    name = "memory"

    def __init__(self, *, max_raw_ticks: int = 2_000_000, raw_seconds: float = 86_400.0,
                 bar_seconds: float = 7 * 86_400.0) -> None:
        self.max_raw_ticks = max_raw_ticks
        self.raw_seconds = raw_seconds
        self.bar_seconds = bar_seconds
        self._raw: dict[str, _Raw] = {}
        self._bars: dict[str, dict[int, Bar]] = {}
        self._order: dict[str, list[int]] = {}
        self._latest: dict[str, RawTick] = {}
        self._symbols: dict[str, SymbolInfo] = {}
        self._arrivals: deque[list] = deque()  # [symbol, count] in arrival order, for eviction
        self._total = 0
        self._seq = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def check(self) -> bool:
        return True

    # -- writes ---------------------------------------------------------------------------
    async def write(self, batch: Mapping[str, Sequence[Tick]]) -> None:
        self.write_now(batch)

    def write_now(self, batch: Mapping[str, Sequence[Tick]]) -> None:
        for symbol, ticks in batch.items():
            if not ticks:
                continue
            if symbol not in self._symbols:
                self._symbols[symbol] = SymbolInfo(symbol)
            raw = self._raw.get(symbol)
            if raw is None:
                raw = self._raw[symbol] = _Raw()
                self._bars[symbol] = {}
                self._order[symbol] = []
            bars, order = self._bars[symbol], self._order[symbol]
            latest = self._latest.get(symbol)
            best = None  # index in ``ticks`` of the newest trade of this write
            best_ts = latest.ts if latest is not None else float("-inf")
            ts_arr, seq_arr, price_arr, vol_arr, keys = raw.ts, raw.seq, raw.price, raw.volume, raw.keys
            seq = self._seq
            for i, tick in enumerate(ticks):
                seq += 1
                ts = tick.ts
                if not ts_arr or ts >= ts_arr[-1]:  # in order: the common case, inlined
                    ts_arr.append(ts)
                    seq_arr.append(seq)
                    price_arr.append(tick.price)
                    vol_arr.append(tick.volume)
                    keys.append(tick.key)
                else:
                    raw.insert(tick, seq)
                bucket = int(ts / BUCKET) * BUCKET
                bar = bars.get(bucket)
                if bar is None:
                    bars[bucket] = Bar(bucket, tick.price, ts, tick.volume)
                    if not order or bucket > order[-1]:
                        order.append(bucket)
                    else:
                        insort(order, bucket)
                else:
                    bar.add(tick.price, ts, tick.volume)
                if ts >= best_ts:
                    best, best_ts = i, ts
            if best is not None:
                t = ticks[best]
                latest = RawTick(symbol, t.price, t.ts, t.volume, self._seq + best + 1)
            self._latest[symbol] = latest  # type: ignore[assignment]
            self._total += seq - self._seq
            self._arrivals.append([symbol, seq - self._seq])
            self._seq = seq
        self._evict_count()

    def _evict_count(self) -> None:
        while self._total > self.max_raw_ticks and self._arrivals:
            entry = self._arrivals[0]
            symbol, count = entry
            n = min(count, self._total - self.max_raw_ticks)
            raw = self._raw.get(symbol)
            if raw is not None:
                have = len(raw)
                raw.drop_front(n)
                self._total -= min(n, have)
            else:
                self._total -= n
            if n == count:
                self._arrivals.popleft()
            else:
                entry[1] = count - n

    async def prune(self, now: float) -> None:
        raw_floor = now - self.raw_seconds
        bar_floor = now - self.bar_seconds
        for symbol, raw in self._raw.items():
            if len(raw) and raw.ts[raw.start] < raw_floor:
                i = bisect_left(raw.ts, raw_floor, lo=raw.start)
                dropped = i - raw.start
                raw.drop_front(dropped)
                self._total -= dropped
            order = self._order[symbol]
            if order and order[0] < bar_floor:
                cut = bisect_left(order, bar_floor)
                bars = self._bars[symbol]
                for bucket in order[:cut]:
                    del bars[bucket]
                del order[:cut]
        # arrival chunks may now overcount; they only ever make count eviction drop fewer
        # ticks than asked, never more, so the count bound still holds.

    async def upsert_symbols(self, items: Sequence[SymbolInfo]) -> int:
        for item in items:
            self._symbols[item.symbol] = item
        return len(items)

    # -- reads ----------------------------------------------------------------------------
    async def symbols(self, active_only: bool) -> list[SymbolInfo]:
        rows = sorted(self._symbols.values(), key=lambda s: s.symbol)
        return [s for s in rows if s.active] if active_only else rows

    async def latest(self, symbol: str) -> RawTick | None:
        return self._latest.get(symbol)

    async def ticks_page(self, symbol: str, before: Cursor | None, limit: int) -> tuple[list[RawTick], Cursor | None]:
        raw = self._raw.get(symbol)
        if raw is None:
            return [], None
        end = len(raw.ts) if before is None else raw.index(before)
        lo = max(raw.start, end - limit)
        items = [raw.raw(symbol, i) for i in range(end - 1, lo - 1, -1)]
        nxt = (items[-1].ts, items[-1].seq) if items and lo > raw.start else None
        return items, nxt

    async def bars_before(self, symbol: str, before: float, limit: int) -> list[Bar]:
        order = self._order.get(symbol)
        if not order:
            return []
        bars = self._bars[symbol]
        end = bisect_left(order, before)
        return [bars[order[i]] for i in range(end - 1, max(0, end - limit) - 1, -1)]

    async def window(self, symbol: str, since: float, until: float) -> Bar | None:
        raw = self._raw.get(symbol)
        if raw is None:
            return None
        lo = bisect_left(raw.ts, since, lo=raw.start)
        hi = bisect_left(raw.ts, until, lo=lo)
        bar = None
        for i in range(lo, hi):
            if bar is None:
                bar = Bar(int(since), raw.price[i], raw.ts[i], raw.volume[i])
            else:
                bar.add(raw.price[i], raw.ts[i], raw.volume[i])
        return bar

    async def load_book(self, symbol: str, lateness: float) -> BookSeed:
        latest = self._latest.get(symbol)
        if latest is None:
            return BookSeed([], [], None)
        floor = latest.ts - lateness
        raw = self._raw[symbol]
        lo = bisect_left(raw.ts, floor, lo=raw.start)
        keys = [(raw.keys[i], raw.ts[i]) for i in range(lo, len(raw.ts))]
        order, bars = self._order[symbol], self._bars[symbol]
        first = bisect_left(order, bucket_of(floor))
        seed_bars = [bars[b].copy() for b in order[max(0, first - (SMA_N - 1)):]]
        return BookSeed(seed_bars, keys, latest.ts)

    def statistics(self) -> dict[str, int]:
        return {"raw_ticks": self._total, "symbols": len(self._symbols),
                "bars": sum(len(o) for o in self._order.values())}


def group_by_symbol(ticks: Iterable[Tick]) -> dict[str, list[Tick]]:
    groups: dict[str, list[Tick]] = {}
    for tick in ticks:
        lst = groups.get(tick.symbol)
        if lst is None:
            groups[tick.symbol] = [tick]
        else:
            lst.append(tick)
    return groups
