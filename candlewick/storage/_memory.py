"""The embedded in-memory Store: everything in this process, bounded by count and age.

Each symbol's raw ticks and bars are a ``SymbolColumns`` (``_columns``). See docs/ARCHITECTURE.md,
"Storage" (memory store).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Mapping, Sequence

import attrs

from candlewick.domain import SMA_N, bucket_of
from candlewick.schema import Bar, SymbolInfo, Tick
from candlewick.storage._columns import SymbolColumns, write_ticks
from candlewick.storage._protocol import BookSeed, Cursor, RawTick


@attrs.frozen
class MemoryStoreStatistics:
    """What a memory store holds now (``MemoryStore.statistics()``)."""

    raw_ticks: int
    """Raw ticks held, at most ``max_raw_ticks``."""
    symbols: int
    """Symbols known: upserted, or seen in ticks."""
    bars: int
    """1-minute bars held, all symbols together."""


class MemoryStore:
    """The embedded default: everything in this process, bounded by count and age."""

    name = "memory"
    durable = False

    def __init__(self, *, max_raw_ticks: int = 2_000_000, raw_seconds: float = 86_400.0,
                 bar_seconds: float = 7 * 86_400.0) -> None:
        self.max_raw_ticks = max_raw_ticks
        self.raw_seconds = raw_seconds
        self.bar_seconds = bar_seconds
        self._raw: dict[str, SymbolColumns] = {}
        self._symbols: dict[str, SymbolInfo] = {}
        # (symbol, count) of each write in arrival order, for eviction: two deques of references
        # (16 bytes a write), not a list per write (80), which at one tick per symbol per flush
        # (thousands of symbols) cost more than the tick itself
        self._arrival_symbols: deque[str] = deque()
        self._arrival_counts: deque[int] = deque()
        self._total = 0
        self._seq = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def check(self) -> bool:
        return True

    # -- writes ---------------------------------------------------------------------------
    async def write(self, batch: Mapping[str, Sequence[Tick]], outbox: bytes | None = None) -> None:
        """Commit at once. ``outbox`` is not kept: a memory store is never shared between
        processes, so no other process could publish its events."""
        self.write_now(batch)

    async def outbox_pending(self, older_than: float, limit: int = 64) -> list[tuple[int, bytes]]:
        """Always empty: ``write`` keeps no outbox."""
        return []

    async def outbox_delete(self, ids: Sequence[int]) -> None:
        pass

    def write_now(self, batch: Mapping[str, Sequence[Tick]]) -> None:
        arrival_symbols, arrival_counts = self._arrival_symbols, self._arrival_counts
        for symbol, ticks in batch.items():
            n = len(ticks)
            if not n:
                continue
            raw = self._raw.get(symbol)
            if raw is None:
                raw = self._raw[symbol] = SymbolColumns()
                if symbol not in self._symbols:
                    self._symbols[symbol] = SymbolInfo(symbol)
            write_ticks(raw, ticks, self._seq)
            self._seq += n
            self._total += n
            if arrival_symbols and arrival_symbols[-1] == symbol:
                arrival_counts[-1] += n
            else:
                arrival_symbols.append(symbol)
                arrival_counts.append(n)
        if self._total > self.max_raw_ticks:
            self._evict_count()

    def _evict_count(self) -> None:
        symbols, counts = self._arrival_symbols, self._arrival_counts
        while self._total > self.max_raw_ticks and symbols:
            symbol, count = symbols[0], counts[0]
            n = min(count, self._total - self.max_raw_ticks)
            raw = self._raw.get(symbol)
            if raw is not None:
                have = len(raw)
                raw.drop_front(n)
                self._total -= min(n, have)
            else:
                self._total -= n
            if n == count:
                symbols.popleft()
                counts.popleft()
            else:
                counts[0] = count - n

    async def prune(self, now: float) -> None:
        raw_floor = now - self.raw_seconds
        bar_floor = now - self.bar_seconds
        for raw in self._raw.values():
            if len(raw) and raw.ts[raw.start] < raw_floor:
                i = bisect_left(raw.ts, raw_floor, lo=raw.start)
                dropped = i - raw.start
                raw.drop_front(dropped)
                self._total -= dropped
            order = raw.order
            if order and order[0] < bar_floor:
                cut = bisect_left(order, bar_floor)
                bars = raw.bars
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
        raw = self._raw.get(symbol)
        if raw is None or raw.latest is None:
            return None
        t = raw.latest
        return RawTick(symbol, t.price, t.ts, t.volume, raw.latest_seq)

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
        raw = self._raw.get(symbol)
        if raw is None or not raw.order:
            return []
        order, bars = raw.order, raw.bars
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
        raw = self._raw.get(symbol)
        if raw is None or raw.latest is None:
            return BookSeed([], [], None)
        latest_ts = raw.latest.ts
        floor = latest_ts - lateness
        lo = bisect_left(raw.ts, floor, lo=raw.start)
        keys = list(zip(raw.keys[lo:], raw.ts[lo:], strict=True))
        order, bars = raw.order, raw.bars
        first = bisect_left(order, bucket_of(floor))
        seed_bars = [bars[b].copy() for b in order[max(0, first - (SMA_N - 1)):]]
        return BookSeed(seed_bars, keys, latest_ts)

    def statistics(self) -> MemoryStoreStatistics:
        """What the store holds now."""
        return MemoryStoreStatistics(raw_ticks=self._total, symbols=len(self._symbols),
                                     bars=sum(len(r.order) for r in self._raw.values()))

