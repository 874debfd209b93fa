"""One symbol's live state, sans-IO: exact dedupe within a lateness horizon, 1m bars, SMA10.

No trio here: ``SymbolBook.apply`` is a plain function of (state, ticks) so it is tested
directly and fast. The symbol actor is a thin loop around it.

The horizon makes dedupe exact with bounded memory: the book remembers every key of ticks
whose trade time is at or after its *floor*, and refuses (counts as ``skipped``) any tick
older than the floor. The floor is the newest trade time seen minus ``lateness``, raised
further when the remembered keys exceed ``max_keys``. Bars below the floor can never change,
so the book keeps only the changeable ones plus the 9 before them (what SMA10 needs).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence

from candlewick.schema import Bar, Tick

BUCKET = 60
SMA_N = 10


def bucket_of(ts: float) -> int:
    """The minute a trade time falls in: floor(ts / 60) * 60, computed as IEEE division then
    floor, bit for bit what Postgres computes for ``floor(ts / 60)`` (``ts // 60`` can differ
    within a nanosecond of a boundary). Hot loops inline ``int(ts / BUCKET) * BUCKET``, the
    same value for the non-negative trade times validation admits."""
    return math.floor(ts / BUCKET) * BUCKET


class Applied:
    """The outcome of one ``SymbolBook.apply`` call."""

    __slots__ = ("new", "events", "duplicates", "skipped")

    def __init__(self) -> None:
        self.new: list[Tick] = []
        """Ticks applied for the first time, in applied order (what the store must write)."""
        self.events: list[tuple] = []
        """One ``(tick, bucket, open, high, low, close, volume, sma10)`` per new tick."""
        self.duplicates = 0
        self.skipped = 0


class SymbolBook:
    """Dedupe horizon, changeable 1m bars and SMA10 for one symbol."""

    def __init__(self, symbol: str, *, lateness: float = 3600.0, max_keys: int = 100_000,
                 bars: Iterable[Bar] = (), keys: Iterable[tuple[str, float]] = (),
                 max_ts: float | None = None) -> None:
        self.symbol = symbol
        self.lateness = lateness
        self.max_keys = max_keys
        self.bars: dict[int, Bar] = {}
        self.order: list[int] = []
        for bar in bars:
            self.bars[bar.bucket] = bar
        self.order = sorted(self.bars)
        self.max_ts = max_ts if max_ts is not None else float("-inf")
        self._cap_floor = float("-inf")
        self.keys: set[str] = set()
        self._key_buckets: dict[int, list[str]] = {}
        self._key_order: list[int] = []
        for key, ts in keys:
            self._remember(key, bucket_of(ts))
        self._prev9: float | None = None
        self._prev9_valid = False
        self._evict()

    # -- state queries ------------------------------------------------------------------
    @property
    def floor(self) -> float:
        """Ticks with trade time below this are skipped: their keys may be forgotten."""
        return max(self.max_ts - self.lateness, self._cap_floor)

    def sma_at(self, index: int) -> float | None:
        if index < SMA_N - 1:
            return None
        bars, order = self.bars, self.order
        return sum(bars[order[j]].close for j in range(index - SMA_N + 1, index + 1)) / SMA_N

    # -- the one mutation -----------------------------------------------------------------
    def apply(self, ticks: Sequence[Tick]) -> Applied:
        """Apply ticks in order; return what was new, with the event each produced."""
        out = Applied()
        floor = self.floor
        keys, bars, order = self.keys, self.bars, self.order
        key_buckets, keys_add = self._key_buckets, keys.add
        new_append, ev_append = out.new.append, out.events.append
        max_ts = self.max_ts
        for tick in ticks:
            ts = tick.ts
            if ts < floor:
                out.skipped += 1
                continue
            key = tick.key
            if key in keys:
                out.duplicates += 1
                continue
            bucket = int(ts / BUCKET) * BUCKET
            kb = key_buckets.get(bucket)
            if kb is not None:
                keys_add(key)
                kb.append(key)
            else:
                self._remember(key, bucket)
            price = tick.price
            bar = bars.get(bucket)
            if bar is None:
                bar = bars[bucket] = Bar(bucket, price, ts, tick.volume)
                if not order or bucket > order[-1]:
                    order.append(bucket)
                else:
                    insort(order, bucket)
                self._prev9_valid = False
            else:
                bar.add(price, ts, tick.volume)
            if ts > max_ts:
                max_ts = ts
            if bucket == order[-1]:
                sma = self._sma_last(bar)
            else:
                self._prev9_valid = False  # an earlier close moved: later SMAs see it
                sma = self.sma_at(bisect_left(order, bucket))
            new_append(tick)
            ev_append((tick, bucket, bar.open, bar.high, bar.low, bar.close, bar.volume, sma))
        if max_ts > self.max_ts:
            self.max_ts = max_ts
            self._evict()
        elif len(keys) > self.max_keys:
            self._evict()
        return out

    # -- internals --------------------------------------------------------------------------
    def _sma_last(self, bar: Bar) -> float | None:
        if not self._prev9_valid:
            n = len(self.order)
            if n < SMA_N:
                self._prev9 = None
            else:
                bars, order = self.bars, self.order
                self._prev9 = sum(bars[order[j]].close for j in range(n - SMA_N, n - 1))
            self._prev9_valid = True
        return None if self._prev9 is None else (self._prev9 + bar.close) / SMA_N

    def _remember(self, key: str, bucket: int) -> None:
        self.keys.add(key)
        kb = self._key_buckets.get(bucket)
        if kb is None:
            kb = self._key_buckets[bucket] = []
            if not self._key_order or bucket > self._key_order[-1]:
                self._key_order.append(bucket)
            else:
                insort(self._key_order, bucket)
        kb.append(key)

    def _evict(self) -> None:
        """Forget keys and bars that the floor has passed; enforce ``max_keys``."""
        korder, kbuckets, keys = self._key_order, self._key_buckets, self.keys
        floor = self.floor
        drop = 0
        while drop < len(korder) and korder[drop] + BUCKET <= floor:
            keys.difference_update(kbuckets.pop(korder[drop]))
            drop += 1
        while len(keys) > self.max_keys and drop < len(korder) - 1:
            bucket = korder[drop]
            keys.difference_update(kbuckets.pop(bucket))
            self._cap_floor = max(self._cap_floor, bucket + BUCKET)
            drop += 1
        if drop:
            del korder[:drop]
        if self.floor == float("-inf"):
            return
        first_changeable = bisect_left(self.order, bucket_of(self.floor))
        cut = first_changeable - (SMA_N - 1)
        if cut > 0:
            for bucket in self.order[:cut]:
                del self.bars[bucket]
            del self.order[:cut]


def with_sma(bars: Sequence[Bar], context: int) -> list[tuple[Bar, float | None]]:
    """Pair each bar after the first ``context`` bars with its SMA10 (oldest-first input).

    ``context`` bars are the ones before the page; the caller fetched up to 9 of them, or
    all that exist. An SMA needs 10 closes, else it is None.
    """
    closes = [b.close for b in bars]
    out = []
    for i in range(context, len(bars)):
        sma = sum(closes[i - SMA_N + 1:i + 1]) / SMA_N if i >= SMA_N - 1 else None
        out.append((bars[i], sma))
    return out


INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}


def rollup(bars_oldest_first: Iterable[Bar], interval: int) -> list[Bar]:
    """Merge 1m bars into bars of ``interval`` seconds (buckets aligned to the epoch)."""
    out: list[Bar] = []
    for bar in bars_oldest_first:
        bucket = bar.bucket - bar.bucket % interval
        if out and out[-1].bucket == bucket:
            out[-1].merge(bar)
        else:
            out.append(bar.copy(bucket))
    return out
