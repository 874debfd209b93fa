"""One symbol's raw ticks in columns, and how a write adds ticks to them and to its bars.

See docs/ARCHITECTURE.md, "Storage" (memory store: the layout, its cost per tick, how a write merges).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from itertools import compress, count, islice, repeat
from operator import eq, gt, itemgetter, mul, truediv

from candlewick.domain import BUCKET
from candlewick.domain import seqsum
from candlewick.schema import Bar, Tick
from candlewick.storage._protocol import Cursor, RawTick

TRIM_MIN = 16
"""A symbol's forgotten ticks are cut from its columns no sooner than this many (see ``drop_front``)."""


class SymbolColumns:
    """One symbol's raw ticks, sorted by (ts, seq), with a lazily trimmed front; and its bars."""

    __slots__ = ("ts", "seq", "price", "volume", "keys", "start", "bars", "order", "latest", "latest_seq")

    def __init__(self) -> None:
        self.ts = array("d")
        self.seq = array("q")
        self.price = array("d")
        self.volume = array("d")
        self.keys: list[str | None] = []
        """None where a tick is forgotten but not yet cut from the columns."""
        self.start = 0
        self.bars: dict[int, Bar] = {}
        self.order: list[int] = []
        """The buckets of ``bars``, ascending."""
        self.latest: Tick | None = None
        """The newest trade written (kept when raw ticks are evicted), and its seq."""
        self.latest_seq = 0

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
        """Forget the ``n`` oldest ticks. The columns are cut once the forgotten part is the larger
        half: each tick is copied at most once more, and a symbol holds at most twice its live ticks
        (plus ``TRIM_MIN``). A fixed threshold here (4,096) meant a thinly traded symbol never cut:
        at 10,000 symbols the count bound held 2,000,000 raw ticks and the columns all 7,200,000.
        The forgotten keys are released at once (their slots set to None): a key string is several
        times the size of a column entry, and the book may have forgotten it already."""
        n = min(n, len(self))
        if n:
            self.keys[self.start:self.start + n] = repeat(None, n)
        self.start += n
        if self.start >= TRIM_MIN and self.start * 2 > len(self.ts):
            s = self.start
            del self.ts[:s], self.seq[:s], self.price[:s], self.volume[:s], self.keys[:s]
            self.start = 0

    def raw(self, symbol: str, i: int) -> RawTick:
        return RawTick(symbol, self.price[i], self.ts[i], self.volume[i], self.seq[i])


def write_ticks(raw: SymbolColumns, ticks: Sequence[Tick], seq: int) -> None:
    """Add one symbol's new ticks (arrival sequence numbers ``seq + 1`` on) to its raw columns
    and bars, a column at a time. The result is what adding them one by one in arrival order
    gives, bit for bit: raw ticks sorted by (trade time, seq); each bar's open the first
    earliest trade, its close the last latest one, its sums added in arrival order."""
    if len(ticks) < 8:  # below this the columns cost more than they save
        for tick in ticks:
            seq += 1
            _write_one(raw, tick, seq)
        return
    keys, _, prices, tss, vols = zip(*ticks, strict=True)
    n = len(tss)
    cuts = list(compress(count(1), map(gt, tss, islice(tss, 1, None))))
    """Where trade time steps back (several requests' parts joined, or late ticks)."""
    oldest, newest = (min(tss), max(tss)) if cuts else (tss[0], tss[-1])
    ts_arr = raw.ts
    if not cuts and (not ts_arr or oldest >= ts_arr[-1]):  # the common case: append
        ts_arr.extend(tss)
        raw.seq.extend(range(seq + 1, seq + n + 1))
        raw.price.extend(prices)
        raw.volume.extend(vols)
        raw.keys.extend(keys)
    else:
        at = bisect_right(ts_arr, oldest, lo=raw.start)
        if at == len(ts_arr):  # out of order among themselves only: sort them, append
            pick = itemgetter(*sorted(range(n), key=tss.__getitem__))  # stable: ties in arrival order
            ts_arr.extend(pick(tss))
            raw.seq.extend(pick(range(seq + 1, seq + n + 1)))
            raw.price.extend(pick(prices))
            raw.volume.extend(pick(vols))
            raw.keys.extend(pick(keys))
        else:  # merge with the stored tail they reach back into (ties: stored first, then arrival order)
            stored = (ts_arr, raw.seq, raw.price, raw.volume, raw.keys)
            rows = list(zip(*(col[at:] for col in stored), strict=True))
            rows += zip(tss, range(seq + 1, seq + n + 1), prices, vols, keys, strict=True)
            rows.sort(key=_row_ts)  # stable
            for col, merged in zip(stored, zip(*rows, strict=True), strict=True):
                del col[at:]
                col.extend(merged)
    first = int(oldest / BUCKET) * BUCKET
    last = int(newest / BUCKET) * BUCKET
    if first == last:
        _add_to_bar(raw, first, prices, tss, vols)
    elif not cuts:  # in order over several minutes: one contiguous run per minute
        i = 0
        while i < n:
            bucket = int(tss[i] / BUCKET) * BUCKET
            if bucket == last:
                j = n
            else:  # the run ends where the minute changes (bisect, then exact by the formula)
                j = bisect_left(tss, bucket + BUCKET, i + 1, n)
                while j - 1 > i and int(tss[j - 1] / BUCKET) * BUCKET != bucket:
                    j -= 1
            _add_to_bar(raw, bucket, prices[i:j], tss[i:j], vols[i:j])
            i = j
    else:  # out of order over several minutes: each minute's ticks gathered, in arrival order
        minutes = list(map(int, map(truediv, tss, repeat(BUCKET))))
        for minute in sorted(set(minutes)):
            at = list(compress(range(n), map(eq, minutes, repeat(minute))))
            if len(at) == 1:
                k = at[0]
                _add_to_bar(raw, minute * BUCKET, (prices[k],), (tss[k],), (vols[k],))
            else:
                pick = itemgetter(*at)
                _add_to_bar(raw, minute * BUCKET, pick(prices), pick(tss), pick(vols))
    latest = raw.latest
    if latest is None or newest >= latest[3]:
        k = n - 1 - tss[::-1].index(newest) if cuts else n - 1  # the last of the latest
        raw.latest, raw.latest_seq = ticks[k], seq + k + 1


_row_ts = itemgetter(0)


def _write_one(raw: SymbolColumns, tick: Tick, seq: int) -> None:
    key, _, price, ts, volume = tick
    ts_arr = raw.ts
    if not ts_arr or ts >= ts_arr[-1]:
        ts_arr.append(ts)
        raw.seq.append(seq)
        raw.price.append(price)
        raw.volume.append(volume)
        raw.keys.append(key)
    else:
        raw.insert(tick, seq)
    bucket = int(ts / BUCKET) * BUCKET
    bar = raw.bars.get(bucket)
    if bar is None:
        raw.bars[bucket] = Bar(bucket, price, ts, volume)
        order = raw.order
        if not order or bucket > order[-1]:
            order.append(bucket)
        else:
            insort(order, bucket)
    else:  # Bar.add, inlined
        if ts < bar.open_ts:
            bar.open, bar.open_ts = price, ts
        if ts >= bar.close_ts:
            bar.close, bar.close_ts = price, ts
        if price > bar.high:
            bar.high = price
        if price < bar.low:
            bar.low = price
        bar.count += 1
        bar.volume += volume
        bar.pv += price * volume
        bar.psum += price
    latest = raw.latest
    if latest is None or ts >= latest[3]:
        raw.latest, raw.latest_seq = tick, seq


def _add_to_bar(raw: SymbolColumns, bucket: int, p: tuple, t: tuple, v: tuple) -> None:
    """``Bar.add`` of each (price, ts, volume) in arrival order, all in ``bucket``, at once."""
    bar = raw.bars.get(bucket)
    if bar is None:
        bar = raw.bars[bucket] = Bar(bucket, p[0], t[0], v[0])
        order = raw.order
        if not order or bucket > order[-1]:
            order.append(bucket)
        else:
            insort(order, bucket)
        if len(p) == 1:
            return
        p, t, v = p[1:], t[1:], v[1:]
    lo = min(t)
    if lo < bar.open_ts:  # the first of the earliest
        bar.open, bar.open_ts = p[t.index(lo)], lo
    hi = max(t)
    if hi >= bar.close_ts:  # the last of the latest
        bar.close, bar.close_ts = p[len(t) - 1 - t[::-1].index(hi)], hi
    high, low = max(p), min(p)
    if high > bar.high:
        bar.high = high
    if low < bar.low:
        bar.low = low
    bar.count += len(p)
    bar.volume = seqsum(v, bar.volume)
    bar.pv = seqsum(map(mul, p, v), bar.pv)
    bar.psum = seqsum(p, bar.psum)
