"""The per-tick reference book: one symbol's dedupe horizon, 1m bars and SMA10, as plain Python.

``SymbolBook.apply`` is a plain function of (state, ticks): the reference the engine's ``BookTable``
(candlewick/domain/_table.py) is held to, bit for bit, in tests/unit/test_table.py (and the yardstick
of ``bench table``). Its two ways through (columnar, for long ordered batches, and the per-tick
loop) give the same results bit for bit (tests/unit/test_book.py). Every float sum adds left to right (``seqsum``, never
``sum``, which compensates rounding from Python 3.12), as ``Bar.add`` and the kernel do. See
docs/ARCHITECTURE.md, "The book table".
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from functools import partial
from itertools import accumulate, chain, compress, count, islice, repeat
from operator import add, gt, mul, truediv
from typing import NamedTuple

from candlewick.domain import BUCKET, SMA_N, Event, bucket_of, seqsum
from candlewick.schema import Bar, Tick

INF = float("inf")


class Applied(NamedTuple):
    """The outcome of one ``SymbolBook.apply`` call."""

    new: list[Tick]
    """Ticks applied for the first time, in applied order (what the store must write)."""
    events: list[Event]
    """One ``Event`` per new tick, in applied order."""
    duplicates: int
    skipped: int
    duplicate_at: list[int] | None = None
    """Positions in the input of the duplicates, ascending (None if there were none)."""
    skipped_at: list[int] | None = None
    """Positions in the input of the skipped ticks, ascending (None if there were none)."""


class KeyHorizon:
    """The keys a ``SymbolBook`` remembers and its floor: the book's base class, so that its hot
    paths reach this state as plain attributes of the book (its dedupe horizon)."""

    __slots__ = ("lateness", "max_keys", "max_ts", "keys", "_cap_floor", "_floor", "_evict_at", "_key_buckets",
                 "_key_order", "_kb_bucket", "_kb_list")

    def __init__(self, lateness: float, max_keys: int, max_ts: float | None) -> None:
        self.lateness = lateness
        self.max_keys = max_keys
        self.max_ts = max_ts if max_ts is not None else -INF
        self._cap_floor = -INF
        self._floor = -INF
        """``floor``, kept current after every batch."""
        self._evict_at = -INF
        """The floor at which ``_evict`` next has something to forget."""
        self.keys: set[str] = set()
        self._key_buckets: dict[int, list[str]] = {}
        self._key_order: list[int] = []
        self._kb_bucket: int | None = None
        self._kb_list: list[str] | None = None
        """The newest minute's key list and its bucket, kept at hand."""

    @property
    def floor(self) -> float:
        """Ticks with trade time below this are skipped: their keys may be forgotten."""
        return max(self.max_ts - self.lateness, self._cap_floor)

    def _remember(self, key: str, bucket: int) -> None:
        self.keys.add(key)
        kb = self._key_buckets.get(bucket)
        korder = self._key_order
        if kb is None:
            kb = self._key_buckets[bucket] = []
            if not korder or bucket > korder[-1]:
                korder.append(bucket)
            else:
                insort(korder, bucket)
            if bucket + BUCKET < self._evict_at:
                self._evict_at = bucket + BUCKET
        if bucket == korder[-1]:
            self._kb_bucket, self._kb_list = bucket, kb
        kb.append(key)

    def _forget_keys(self) -> float:
        """Forget the keys that the floor has passed; enforce ``max_keys`` (which raises the floor).
        Returns the floor."""
        korder, kbuckets, keys = self._key_order, self._key_buckets, self.keys
        floor = self._floor = self.floor
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
            if self._kb_bucket not in kbuckets:
                self._kb_bucket = self._kb_list = None
        floor = self._floor = self.floor
        return floor


RUN_MIN = 16
"""Batches at least this long try the columnar path first (below it the loop is cheaper)..."""
RUN_SEGMENT_MIN = 4
"""...if their ordered runs are this long on average (joined parts of 1-3 ticks: the loop)."""


_applied = partial(tuple.__new__, Applied)
"""``Applied`` from a 6-tuple without the keyword handling of ``Applied(...)``."""
_new = tuple.__new__
"""``_new(Event, (...))``: an ``Event`` from an 8-tuple, likewise; one per new tick, so called
directly (``map(_new, repeat(Event), ...)`` in bulk), which is cheaper than through a partial."""


class SymbolBook(KeyHorizon):
    """Dedupe horizon, changeable 1m bars and SMA10 for one symbol."""

    __slots__ = ("symbol", "bars", "order", "_top_bucket", "_top_bar", "_prev9", "_prev9_valid")

    def __init__(self, symbol: str, *, lateness: float = 3600.0, max_keys: int = 100_000,
                 bars: Iterable[Bar] = (), keys: Iterable[tuple[str, float]] = (),
                 max_ts: float | None = None) -> None:
        super().__init__(lateness, max_keys, max_ts)
        self.symbol = symbol
        self.bars: dict[int, Bar] = {}
        for bar in bars:
            self.bars[bar.bucket] = bar
        self.order: list[int] = sorted(self.bars)
        """The buckets of ``bars``, ascending."""
        self._top_bucket = self.order[-1] if self.order else -INF
        self._top_bar: Bar | None = self.bars[self._top_bucket] if self.order else None
        """The newest bar and its bucket (where nearly every tick goes), kept at hand."""
        for key, ts in keys:
            self._remember(key, bucket_of(ts))
        self._prev9: float | None = None
        self._prev9_valid = False
        self._evict()

    # -- state queries ------------------------------------------------------------------
    def sma_at(self, index: int) -> float | None:
        if index < SMA_N - 1:
            return None
        bars, order = self.bars, self.order
        return seqsum((bars[order[j]].close for j in range(index - SMA_N + 1, index + 1)), 0) / SMA_N

    # -- the one mutation -----------------------------------------------------------------
    def apply(self, ticks: Sequence[Tick]) -> Applied:
        """Apply ticks in order; return what was new, with the event each produced."""
        if len(ticks) >= RUN_MIN:
            out = self._apply_run(ticks)
            if out is not None:
                return out
        return self._apply_each(ticks)

    def _apply_each(self, ticks: Sequence[Tick]) -> Applied:
        floor = self._floor
        keys = self.keys
        keys_add = keys.add
        top_bucket, top = self._top_bucket, self._top_bar
        kb_bucket, kb_list = self._kb_bucket, self._kb_list
        new: list[Tick] = []
        events: list[Event] = []
        max_ts = self.max_ts
        duplicate_at: list[int] | None = None
        skipped_at: list[int] | None = None
        for i, tick in enumerate(ticks):
            key, _, price, ts, volume = tick
            if ts < floor:
                if skipped_at is None:
                    skipped_at = []
                skipped_at.append(i)
                continue
            if key in keys:
                if duplicate_at is None:
                    duplicate_at = []
                duplicate_at.append(i)
                continue
            bucket = int(ts / BUCKET) * BUCKET
            if bucket == kb_bucket:
                keys_add(key)
                kb_list.append(key)  # type: ignore[union-attr]
            else:
                self._remember(key, bucket)
                kb_bucket, kb_list = self._kb_bucket, self._kb_list
            if ts > max_ts:
                max_ts = ts
            if bucket == top_bucket:  # the newest bar
                bar = top
                bar.add(price, ts, volume)
            else:
                bar = self._other_bar(bucket, price, ts, volume)
                top_bucket, top = self._top_bucket, self._top_bar
            if bucket == top_bucket:
                if not self._prev9_valid:
                    self._load_prev9()
                prev9 = self._prev9
                sma = None if prev9 is None else (prev9 + bar.close) / SMA_N
            else:
                self._prev9_valid = False  # an earlier close moved: later SMAs see it
                sma = self.sma_at(bisect_left(self.order, bucket))
            new.append(tick)
            events.append(_new(Event, (tick, bucket, bar.open, bar.high, bar.low, bar.close, bar.volume, sma)))
        if max_ts > self.max_ts:
            self.max_ts = max_ts
            if max_ts - self.lateness > self._floor:
                self._floor = max_ts - self.lateness
        if self._floor >= self._evict_at or len(keys) > self.max_keys:
            self._evict()
        return _applied((new, events, len(duplicate_at) if duplicate_at else 0,
                         len(skipped_at) if skipped_at else 0, duplicate_at, skipped_at))

    def _other_bar(self, bucket: int, price: float, ts: float, volume: float) -> Bar:
        """A tick for a bar other than the newest: a new bar (maybe the new newest) or a late tick."""
        bar = self.bars.get(bucket)
        if bar is not None:
            bar.add(price, ts, volume)
            return bar
        bar = self.bars[bucket] = Bar(bucket, price, ts, volume)
        if bucket > self._top_bucket:
            self.order.append(bucket)
            self._top_bucket, self._top_bar = bucket, bar
        else:
            insort(self.order, bucket)
        self._prev9_valid = False
        return bar

    def _apply_run(self, ticks: Sequence[Tick]) -> Applied | None:
        """The columnar path, or None (having changed nothing) when the batch does not qualify:
        every tick fresh and at or above the floor, and either in trade-time order from the
        newest minute on, or (several requests' parts joined, each in order) all in the newest
        minute or a new one."""
        keys_in, _, prices, tss, vols = zip(*ticks, strict=True)
        n = len(tss)
        cuts = list(compress(count(1), map(gt, tss, islice(tss, 1, None))))
        """Where trade time steps back: the batch is sorted between cuts."""
        if n < RUN_SEGMENT_MIN * (len(cuts) + 1):
            return None
        oldest = min(tss) if cuts else tss[0]
        if oldest < self._floor:
            return None
        order = self.order
        first = int(oldest / BUCKET) * BUCKET
        if first < self._top_bucket:
            return None
        newest = max(tss) if cuts else tss[-1]
        last = int(newest / BUCKET) * BUCKET
        if cuts and last != first:
            return None
        keys = self.keys
        if not keys.isdisjoint(keys_in):
            return None
        known = len(keys)
        keys.update(keys_in)
        if len(keys) - known != n:  # a key twice in the batch: undo (none was known before)
            keys.difference_update(keys_in)
            return None
        events: list[Event] = []
        bars, key_buckets = self.bars, self._key_buckets
        i = 0
        while i < n:
            bucket = first if i == 0 else int(tss[i] / BUCKET) * BUCKET
            if bucket == last:
                j = n
            else:  # the run ends where the minute changes (bisect, then exact by the formula)
                j = bisect_left(tss, bucket + BUCKET, i + 1, n)
                while j - 1 > i and int(tss[j - 1] / BUCKET) * BUCKET != bucket:
                    j -= 1
            kb = key_buckets.get(bucket)
            if kb is None:
                self._remember(keys_in[i], bucket)
                key_buckets[bucket].extend(keys_in[i + 1:j])
            else:
                kb.extend(keys_in[i:j])
            bar = bars.get(bucket)
            k = i
            if bar is None:
                price, ts, volume = prices[i], tss[i], vols[i]
                bar = bars[bucket] = Bar(bucket, price, ts, volume)
                order.append(bucket)
                self._top_bucket, self._top_bar = bucket, bar
                self._load_prev9()
                prev9 = self._prev9
                events.append(_new(Event, (ticks[i], bucket, price, price, price, price, volume,
                                      None if prev9 is None else (prev9 + price) / SMA_N)))
                k = i + 1
            elif not self._prev9_valid:
                self._load_prev9()
            if k < j:
                self._run_into(bar, bucket, ticks, prices, tss, vols, k, j, events, cuts)
            i = j
        if newest > self.max_ts:
            self.max_ts = newest
            if newest - self.lateness > self._floor:
                self._floor = newest - self.lateness
        if self._floor >= self._evict_at or len(keys) > self.max_keys:
            self._evict()
        return _applied((list(ticks), events, 0, 0, None, None))

    def _run_into(self, bar: Bar, bucket: int, ticks, prices, tss, vols, i: int, j: int, events: list[Event],
                  cuts: list[int]) -> None:
        """Add ticks[i:j] to ``bar``, the newest bar, with one event each. The ticks are in
        trade-time order between ``cuts`` (positions where a joined request's part begins)."""
        p, v = prices[i:j], vols[i:j]
        if not cuts:  # one ordered run: only its first tick can move the open
            if tss[i] < bar.open_ts:
                bar.open, bar.open_ts = p[0], tss[i]
            opens = repeat(bar.open)
            close_ts = bar.close_ts
            if tss[i] >= close_ts:
                closes = p
            else:  # the leading ticks are older than the bar's close: it stays until one is not
                c = bisect_left(tss, close_ts, i, j) - i
                closes = (bar.close,) * c + p[c:]
            if tss[j - 1] >= close_ts:
                bar.close, bar.close_ts = p[-1], tss[j - 1]
        else:  # the same, ordered run by ordered run
            opens, closes = [], []
            open_, open_ts, close, close_ts = bar.open, bar.open_ts, bar.close, bar.close_ts
            a = i
            for b in chain(cuts, (j,)):
                if b <= a:
                    continue
                if tss[a] < open_ts:
                    open_, open_ts = prices[a], tss[a]
                opens += repeat(open_, b - a)
                if tss[a] >= close_ts:
                    closes += prices[a:b]
                else:
                    c = bisect_left(tss, close_ts, a, b)
                    closes += repeat(close, c - a)
                    closes += prices[c:b]
                if tss[b - 1] >= close_ts:
                    close, close_ts = prices[b - 1], tss[b - 1]
                a = b
            bar.open, bar.open_ts, bar.close, bar.close_ts = open_, open_ts, close, close_ts
        highs = _running(p, max, bar.high)
        lows = _running(p, min, bar.low)
        volumes = list(accumulate(v, add, initial=bar.volume))
        del volumes[0]
        bar.high, bar.low, bar.volume = highs[-1], lows[-1], volumes[-1]
        bar.count += j - i
        bar.pv = seqsum(map(mul, p, v), bar.pv)
        bar.psum = seqsum(p, bar.psum)
        prev9 = self._prev9
        smas = repeat(None) if prev9 is None else map(truediv, map(prev9.__add__, closes), repeat(SMA_N))
        events += map(_new, repeat(Event), zip(ticks[i:j], repeat(bucket), opens, highs, lows, closes, volumes, smas))

    # -- internals --------------------------------------------------------------------------
    def _load_prev9(self) -> None:
        """The sum of the 9 closes before the newest bar (what SMA10 of the newest bar adds to)."""
        n = len(self.order)
        if n < SMA_N:
            self._prev9 = None
        else:
            bars, order = self.bars, self.order
            self._prev9 = seqsum((bars[order[j]].close for j in range(n - SMA_N, n - 1)), 0)
        self._prev9_valid = True

    def _evict(self) -> None:
        """Forget keys and bars that the floor has passed; enforce ``max_keys``."""
        floor = self._forget_keys()
        if floor == float("-inf"):
            self._evict_at = floor  # until there is a floor, look every time
            return
        floor_bucket = bucket_of(floor)
        first_changeable = bisect_left(self.order, floor_bucket)
        cut = first_changeable - (SMA_N - 1)
        if cut > 0:
            for bucket in self.order[:cut]:
                del self.bars[bucket]
            del self.order[:cut]
        # nothing more to forget until the floor reaches the next minute or passes the oldest keys
        korder = self._key_order
        self._evict_at = min(korder[0] + BUCKET if korder else INF, floor_bucket + BUCKET)


def _running(values: tuple[float, ...], pick, start: float) -> list[float] | tuple[float, ...]:
    """Running ``pick`` (max or min) of ``start`` and each value: the bar's high or low after each
    tick. Cheap when it settles early (``accumulate`` only up to where the extreme is)."""
    extreme = pick(values)
    if pick(extreme, start) == start:
        return (start,) * len(values)
    at = values.index(extreme)
    head = list(accumulate(values[:at], pick, initial=start))
    del head[0]
    head += repeat(extreme, len(values) - at)
    return head
