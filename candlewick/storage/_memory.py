"""The embedded in-memory Store: everything in this process, as columns, bounded by count and age.

Raw ticks are rows of sorted runs (``_columns.RawTicks``), candles of every interval are rows of a
dense table and of sorted runs (``_mem_bars.Bars``), and each symbol's latest trade is a row of four
arrays, all indexed by a small integer code per symbol: no object per tick or per candle. A write
is a fixed number of numpy steps whatever its symbols; every read gathers O(limit) rows. See
docs/ARCHITECTURE.md, "Storage" (memory store).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from itertools import chain, islice, repeat

import attrs
import numpy as np

from candlewick.domain import INTERVALS, SMA_N, bucket_of
from candlewick.schema import Bar, SymbolInfo, Tick, TickColumns, digest_bytes
from candlewick.storage._columns import RAW, RawTicks
from candlewick.storage._mem_bars import Bars
from candlewick.storage._protocol import BookSeed, Cursor, RawTick

INF = math.inf


@attrs.frozen
class MemoryStoreStatistics:
    """What a memory store holds now (``MemoryStore.statistics()``)."""

    raw_ticks: int
    """Raw ticks held, at most ``max_raw_ticks``."""
    symbols: int
    """Symbols known: upserted, or seen in ticks."""
    bars: int
    """1-minute candles held (within retention), all symbols together."""
    rollup_bars: int = 0
    """Candles of the other intervals (5m to 1w) held."""
    rows_read: int = 0
    """Rows (raw ticks and candles) that reads have gathered since the start: each read adds O(limit)."""


class MemoryStore:
    """The embedded default: everything in this process, bounded by count and age."""

    name = "memory"
    durable = False

    def __init__(self, *, max_raw_ticks: int = 2_000_000, raw_seconds: float = 86_400.0,
                 bar_seconds: float = 7 * 86_400.0) -> None:
        self.max_raw_ticks = max_raw_ticks
        self.raw_seconds = raw_seconds
        self.bar_seconds = bar_seconds
        self._codes: dict[str, int] = {}
        self._names: list[str] = []
        self._symbols: dict[str, SymbolInfo] = {}
        self._raw = RawTicks()
        self._bars = Bars()
        # each symbol's latest trade (by trade time; the last applied on a tie), by code
        self._latest_ts = np.zeros(0)
        self._latest = np.zeros((0, 2))  # price, volume
        self._latest_seq = np.zeros(0, dtype=np.int64)
        self._seq = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def check(self) -> bool:
        return True

    # -- writes ---------------------------------------------------------------------------
    async def write(self, batch: Mapping[str, Sequence[Tick]] | TickColumns, outbox: bytes | None = None) -> None:
        """Commit at once. ``outbox`` is not kept: a memory store is never shared between
        processes, so no other process could publish its events."""
        self.write_now(batch)

    async def outbox_pending(self, older_than: float, limit: int = 64) -> list[tuple[int, bytes]]:
        """Always empty: ``write`` keeps no outbox."""
        return []

    async def outbox_delete(self, ids: Sequence[int]) -> None:
        pass

    def write_now(self, batch: Mapping[str, Sequence[Tick]] | TickColumns) -> None:
        """Add new ticks: per symbol in arrival order (a mapping), or as columns in arrival order."""
        cols = self._from_columns(batch) if isinstance(batch, TickColumns) else self._from_mapping(batch)
        if cols is None:
            return
        code, ts, price, volume, digest, others = cols
        n = len(ts)
        rows = np.empty(n, dtype=RAW)
        rows["seq"] = np.arange(self._seq + 1, self._seq + n + 1)
        rows["price"], rows["volume"] = price, volume
        rows["hi"], rows["lo"] = digest[:, 0], digest[:, 1]
        if others:
            self._raw.other_keys.update((self._seq + 1 + i, key) for i, key in others)
        self._raw.add(code, ts, rows)
        self._seq += n
        if not isinstance(batch, TickColumns):
            grouped = None  # a mapping's ticks come grouped by symbol already
        else:
            grouped = np.argsort(code, kind="stable")
            code, ts, price, volume, rows = code[grouped], ts[grouped], price[grouped], volume[grouped], rows[grouped]
        self._note_latest(code, ts, price, volume, rows["seq"])
        self._bars.write(code, ts, price, volume)
        if self._raw.live > self.max_raw_ticks:
            self._raw.evict(self._raw.live - self.max_raw_ticks)

    def _code(self, symbol: str) -> int:
        code = self._codes.get(symbol)
        if code is None:
            code = self._codes[symbol] = len(self._names)
            self._names.append(symbol)
            if symbol not in self._symbols:
                self._symbols[symbol] = SymbolInfo(symbol)
            if code >= len(self._latest_ts):
                size = max(64, 2 * code)
                self._latest_ts = np.concatenate((self._latest_ts, np.full(size - len(self._latest_ts), -INF)))
                self._latest = np.concatenate((self._latest, np.zeros((size - len(self._latest), 2))))
                self._latest_seq = np.concatenate((self._latest_seq, np.zeros(size - len(self._latest_seq), np.int64)))
                self._bars.grow(size)
        return code

    def _codes_of(self, symbols: list[str]) -> np.ndarray:
        """The codes of ``symbols``: one dict lookup each in C (``map``), a Python call only for a new one."""
        table = np.fromiter(map(self._codes.get, symbols, repeat(-1)), np.int64, len(symbols))
        new = np.flatnonzero(table < 0)
        if len(new):
            table[new] = [self._code(symbols[i]) for i in new.tolist()]
        return table

    def _from_mapping(self, batch: Mapping[str, Sequence[Tick]]):
        symbols = [symbol for symbol, ticks in batch.items() if ticks]
        if not symbols:
            return None
        parts = [batch[s] for s in symbols]
        code = np.repeat(self._codes_of(symbols), np.fromiter(map(len, parts), np.int64, len(parts)))
        keys, _, price, ts, volume = zip(*chain.from_iterable(parts), strict=True)
        others = None
        try:
            blob = b"".join(keys) if set(map(len, keys)) == {16} else None
        except TypeError:  # some key is not bytes
            blob = None
        if blob is None:  # not all 16-byte digests: those that are not are kept aside by seq
            others = [(i, k) for i, k in enumerate(keys) if not (type(k) is bytes and len(k) == 16)]
            blob = b"".join(k if type(k) is bytes and len(k) == 16 else bytes(16) for k in keys)
        digest = np.frombuffer(blob, dtype=">u8").astype(np.uint64).reshape(-1, 2)
        return code, np.array(ts, dtype=np.float64), np.array(price, dtype=np.float64), \
            np.array(volume, dtype=np.float64), digest, others

    def _from_columns(self, cols: TickColumns):
        if not len(cols):
            return None
        table = self._codes_of(cols.symbols)
        return (table[cols.sym], np.asarray(cols.ts, dtype=np.float64), np.asarray(cols.price, dtype=np.float64),
                np.asarray(cols.volume, dtype=np.float64), np.asarray(cols.digest, dtype=np.uint64), None)

    def _note_latest(self, code: np.ndarray, ts: np.ndarray, price: np.ndarray, volume: np.ndarray,
                     seq: np.ndarray) -> None:
        """Each symbol's newest trade of these (grouped by symbol, arrival order), if not older than its latest."""
        n = len(ts)
        starts = np.flatnonzero(np.concatenate(([True], code[1:] != code[:-1])))
        ends = np.append(starts[1:], n)
        newest = np.maximum.reduceat(ts, starts)
        at = np.flatnonzero(ts == np.repeat(newest, ends - starts))
        last = at[at.searchsorted(ends) - 1]  # the last applied of the latest
        codes = code[starts]
        take = newest >= self._latest_ts[codes]
        codes, last = codes[take], last[take]
        self._latest_ts[codes] = ts[last]
        self._latest[codes, 0], self._latest[codes, 1] = price[last], volume[last]
        self._latest_seq[codes] = seq[last]

    async def prune(self, now: float) -> None:
        self._raw.prune(now - self.raw_seconds)
        self._bars.prune(now, self.bar_seconds)

    async def upsert_symbols(self, items: Sequence[SymbolInfo]) -> int:
        for item in items:
            self._symbols[item.symbol] = item
        return len(items)

    # -- reads ----------------------------------------------------------------------------
    _names_sorted: Sequence[str] = ()  # symbol names in order; none is ever removed: new ones are the dict's tail

    async def symbols(self, active_only: bool, limit: int, after: str | None = None) -> list[SymbolInfo]:
        names = self._names_sorted
        if len(names) < len(self._symbols):
            names = self._names_sorted = [*names, *islice(self._symbols, len(names), None)]
            names.sort()
        start = bisect_right(names, after) if after is not None else 0
        rows = (self._symbols[names[i]] for i in range(start, len(names)))
        return list(islice((s for s in rows if s.active) if active_only else rows, max(limit, 0)))

    async def latest(self, symbol: str) -> RawTick | None:
        code = self._codes.get(symbol)
        if code is None or self._latest_ts[code] == -INF:
            return None
        price, volume = self._latest[code].tolist()
        return RawTick(symbol, price, float(self._latest_ts[code]), volume, int(self._latest_seq[code]))

    async def ticks_page(self, symbol: str, before: Cursor | None, limit: int) -> tuple[list[RawTick], Cursor | None]:
        code = self._codes.get(symbol)
        if code is None or limit <= 0:
            return [], None
        ts, seq = (None, 0) if before is None else before
        rows, more = self._raw.before(code, ts, seq, limit)
        items = [RawTick(symbol, p, t, v, s) for p, t, v, s in
                 zip(rows["price"].tolist(), rows["ts"].tolist(), rows["volume"].tolist(), rows["seq"].tolist(),
                     strict=True)]
        return items, (items[-1].ts, items[-1].seq) if more and items else None

    async def bars_before(self, symbol: str, before: float, limit: int) -> list[Bar]:
        return await self.candles(symbol, 60, before, limit)

    async def candles(self, symbol: str, interval: int, before: float, limit: int) -> list[Bar]:
        if interval not in INTERVALS.values():
            raise ValueError(f"no candles of {interval} seconds")
        code = self._codes.get(symbol)
        if code is None:
            return []
        buckets, rows = self._bars.read(code, interval, before, limit)
        return _bars(buckets, rows)

    async def window(self, symbol: str, since: float, until: float) -> Bar | None:
        code = self._codes.get(symbol)
        if code is None:
            return None
        rows = self._raw.between(code, since, until)
        if not len(rows):
            return None
        price, ts, volume = rows["price"], rows["ts"], rows["volume"]
        bar = Bar(int(since), float(price[0]), float(ts[0]), float(volume[0]))  # the first of the earliest
        bar.close, bar.close_ts = float(price[-1]), float(ts[-1])  # the last of the latest
        bar.high, bar.low, bar.count = float(price.max()), float(price.min()), len(price)
        # sums in (ts, seq) order, one after another (cumsum adds left to right), as Bar.add would
        bar.volume = float(np.cumsum(volume)[-1])
        bar.pv = float(np.cumsum(price * volume)[-1])
        bar.psum = float(np.cumsum(price)[-1])
        return bar

    async def load_book(self, symbol: str, lateness: float) -> BookSeed:
        code = self._codes.get(symbol)
        if code is None or self._latest_ts[code] == -INF:
            return BookSeed([], [], None)
        latest_ts = float(self._latest_ts[code])
        floor = latest_ts - lateness
        rows = self._raw.between(code, floor, INF)
        digests = digest_bytes(np.stack((rows["hi"], rows["lo"]), axis=1))
        keys = [digests[i:i + 16] for i in range(0, len(digests), 16)]
        other = self._raw.other_keys
        if other:
            keys = [other.get(s, k) for s, k in zip(rows["seq"].tolist(), keys, strict=True)]
        first = bucket_of(floor)
        buckets, bar_rows = self._bars.since(code, 60, first)
        older = self._bars.read(code, 60, first, SMA_N - 1)
        seed = _bars(older[0], older[1])[::-1] + _bars(buckets, bar_rows)
        return BookSeed(seed, list(zip(keys, rows["ts"].tolist(), strict=True)), latest_ts)

    def statistics(self) -> MemoryStoreStatistics:
        """What the store holds now."""
        return MemoryStoreStatistics(raw_ticks=self._raw.live, symbols=len(self._symbols),
                                     bars=self._bars.count(60), rollup_bars=self._bars.count(None),
                                     rows_read=self._raw.rows_read + self._bars.rows_read)


def _bars(buckets: np.ndarray, rows: np.ndarray) -> list[Bar]:
    """``Bar`` objects of candle rows, in the given order."""
    out = []
    new = Bar.__new__
    for b, o, ot, hi, lo, c, ct, v, pv, ps, n in zip(buckets.tolist(), *rows.T.tolist(), strict=True):  # FIELDS
        bar = new(Bar)
        bar.bucket, bar.open, bar.open_ts, bar.high, bar.low, bar.close, bar.close_ts = int(b), o, ot, hi, lo, c, ct
        bar.count, bar.volume, bar.pv, bar.psum = int(n), v, pv, ps
        out.append(bar)
    return out
