"""The candle rule as array code: many bars folded over their ticks in one step, bit for bit ``Bar.add``.

``fold`` takes ticks grouped by bar (each group's ticks contiguous, in applied order) and each
group's starting bar (or none: the group's first tick opens it, as ``Bar(...)`` does), and returns
every bar just after each of its ticks and at the end. ``sma10`` adds closes left to right, as
``sum`` does. No Python loop runs per tick or per group: the work is numpy over whole columns.

Exactness. Open, close, high and low are selections (exact in any order of evaluation); the sums
(volume, price * volume, price) must be added one tick after the other, as ``Bar.add`` does,
because float addition is not associative. So each group is a column of a padded (length x groups)
matrix and the sums are ``np.add.accumulate`` along axis 0, which adds row after row; groups are
batched by length class (lengths in (2^(c-1), 2^c] padded to 2^c), so padding at most doubles the
work. Values are read only at each group's own rows, so the padding never reaches a result.
"""

from __future__ import annotations

import numpy as np

from candlewick.domain._candles import BUCKET, SMA_N

FLOATS = ("open", "open_ts", "high", "low", "close", "close_ts", "volume", "pv", "psum")
"""The float64 columns of a bar (``count`` is the int64 one)."""

_INF = np.inf


class BarColumns:
    """Bars as columns (a struct of arrays): the fields of ``schema.Bar`` except ``bucket``."""

    __slots__ = (*FLOATS, "count")

    def __init__(self, n: int = 0) -> None:
        for name in FLOATS:
            setattr(self, name, np.zeros(n))
        self.count = np.zeros(n, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.count)

    def take(self, index: np.ndarray) -> BarColumns:
        """The bars at ``index`` (positions or a mask), copied."""
        out = BarColumns.__new__(BarColumns)
        for name in BarColumns.__slots__:
            setattr(out, name, getattr(self, name)[index])
        return out

    def put(self, index: np.ndarray, other: BarColumns) -> None:
        """Write ``other``'s bars at ``index``."""
        for name in BarColumns.__slots__:
            getattr(self, name)[index] = getattr(other, name)

    @classmethod
    def of(cls, bars) -> BarColumns:
        """Columns of ``schema.Bar`` objects (in order)."""
        bars = list(bars)
        out = cls.__new__(cls)
        for name in FLOATS:
            setattr(out, name, np.array([getattr(b, name) for b in bars], dtype=np.float64))
        out.count = np.array([b.count for b in bars], dtype=np.int64)
        return out


class Folded:
    """What ``fold`` returns: the bar just after each tick (in the input's grouped order), and
    ``final``, each group's bar after all its ticks."""

    __slots__ = ("open", "high", "low", "close", "volume", "final")

    def __init__(self, n: int) -> None:
        self.open, self.high, self.low, self.close, self.volume = (np.empty(n) for _ in range(5))
        self.final: BarColumns = BarColumns(0)


def minute_of(ts: np.ndarray) -> np.ndarray:
    """The minute index of each trade time (``bucket_of(ts) // 60``): IEEE division, then floor."""
    return np.floor(ts / BUCKET).astype(np.int64)


def group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Where each run of equal values starts in ``sorted_keys`` (positions, ascending, from 0)."""
    if not len(sorted_keys):
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))


def ranks(starts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For groups starting at ``starts`` over ``n`` items: each item's group and rank in it."""
    group = np.zeros(n, dtype=np.intp)
    if len(starts) > 1:
        group[starts[1:]] = 1
    np.cumsum(group, out=group)
    return group, np.arange(n) - starts[group]


def fold(starts: np.ndarray, price: np.ndarray, ts: np.ndarray, volume: np.ndarray,
         init: BarColumns, has_init: np.ndarray) -> Folded:
    """Apply each group's ticks to its bar in order, as ``Bar.add`` would, all groups at once.

    ``starts``: where each group's ticks start (ascending, the first 0); ``price``/``ts``/``volume``:
    the ticks, grouped, each group in applied order. ``init``: the bar each group starts from where
    ``has_init`` holds; elsewhere the group's first tick opens the bar (``Bar(bucket, ...)``)."""
    n, g = len(ts), len(starts)
    out = Folded(n)
    if not n:
        return out
    group, rank = ranks(starts, n)
    lengths = np.diff(np.append(starts, n))
    hi = has_init.astype(np.intp)
    row = rank + hi[group]
    """Each tick's row in its group's column: row 0 is the starting bar."""
    seq = lengths + hi
    # row 0 of every group: the starting bar, or the bar its first tick opens
    first = starts
    p0, t0, v0 = price[first], ts[first], volume[first]
    final = BarColumns.__new__(BarColumns)
    final.open = np.where(has_init, init.open, p0)
    final.open_ts = np.where(has_init, init.open_ts, t0)
    final.high = np.where(has_init, init.high, p0)
    final.low = np.where(has_init, init.low, p0)
    final.close = np.where(has_init, init.close, p0)
    final.close_ts = np.where(has_init, init.close_ts, t0)
    final.volume = np.where(has_init, init.volume, v0)
    final.pv = np.where(has_init, init.pv, p0 * v0)
    final.psum = np.where(has_init, init.psum, p0)
    final.count = np.where(has_init, init.count, 1) + seq - 1
    # a tick at row 0 (it opened its bar): the bar just after it is that bar
    at0 = np.flatnonzero(row == 0)
    out.open[at0] = out.high[at0] = out.low[at0] = out.close[at0] = price[at0]
    out.volume[at0] = volume[at0]
    klass = np.zeros(g, dtype=np.int64)
    many = seq > 1
    klass[many] = np.ceil(np.log2(seq[many])).astype(np.int64)
    for c in np.unique(klass[many]).tolist():
        groups = np.flatnonzero(klass == c)
        _fold_class(1 << c, groups, seq[groups] - 1, group, row, price, ts, volume, final, out)
    out.final = final
    return out


def _fold_class(size: int, groups: np.ndarray, end: np.ndarray, group: np.ndarray, row: np.ndarray, price: np.ndarray,
                ts: np.ndarray, volume: np.ndarray, final: BarColumns, out: Folded) -> None:
    """``fold`` for the groups of one length class: columns of a (size x len(groups)) matrix;
    ``end``: each group's last row."""
    width = len(groups)
    column = np.full(len(final.count), -1, dtype=np.intp)
    column[groups] = np.arange(width)
    ticks = np.flatnonzero((column[group] >= 0) & (row > 0))
    col = column[group[ticks]]
    flat = row[ticks] * width + col
    """Each tick's cell in a flattened (size, width) matrix."""
    cells = size * width
    p, t = price[ticks], ts[ticks]
    # running max of (close_ts, high), running min of (open_ts, low), running sums; row 0: the bar
    top = np.full((2, cells), -_INF)
    top[0, :width], top[1, :width] = final.close_ts[groups], final.high[groups]
    top[0, flat], top[1, flat] = t, p
    bottom = np.full((2, cells), _INF)
    bottom[0, :width], bottom[1, :width] = final.open_ts[groups], final.low[groups]
    bottom[0, flat], bottom[1, flat] = t, p
    sums = np.zeros((3, cells))
    sums[0, :width], sums[1, :width], sums[2, :width] = final.volume[groups], final.pv[groups], final.psum[groups]
    sums[0, flat], sums[1, flat], sums[2, flat] = volume[ticks], p * volume[ticks], p
    top = np.maximum.accumulate(top.reshape(2, size, width), axis=1).reshape(2, cells)
    bottom = np.minimum.accumulate(bottom.reshape(2, size, width), axis=1).reshape(2, cells)
    sums = np.add.accumulate(sums.reshape(3, size, width), axis=1).reshape(3, cells)
    # which row set the open (strictly earlier than all before) and the close (not earlier than
    # the latest before): the newest such row up to each row
    before = flat - width
    rows = np.zeros((2, cells), dtype=np.intp)
    rows[0, flat] = np.where(t < bottom[0, before], row[ticks], 0)
    rows[1, flat] = np.where(t >= top[0, before], row[ticks], 0)
    rows = np.maximum.accumulate(rows.reshape(2, size, width), axis=1).reshape(2, cells)
    prices = np.empty(cells)
    prices[flat] = p
    o_row, c_row = rows[0, flat], rows[1, flat]
    gt = groups[col]
    out.open[ticks] = np.where(o_row > 0, prices[o_row * width + col], final.open[gt])
    out.close[ticks] = np.where(c_row > 0, prices[c_row * width + col], final.close[gt])
    out.high[ticks], out.low[ticks], out.volume[ticks] = top[1, flat], bottom[1, flat], sums[0, flat]
    # each group's last row is its final bar
    across = np.arange(width)
    cell = end * width + across
    o_end, c_end = rows[0, cell], rows[1, cell]
    final.open[groups] = np.where(o_end > 0, prices[o_end * width + across], final.open[groups])
    final.close[groups] = np.where(c_end > 0, prices[c_end * width + across], final.close[groups])
    final.open_ts[groups], final.close_ts[groups] = bottom[0, cell], top[0, cell]
    final.high[groups], final.low[groups] = top[1, cell], bottom[1, cell]
    final.volume[groups], final.pv[groups], final.psum[groups] = sums[0, cell], sums[1, cell], sums[2, cell]


def sma10(closes: np.ndarray) -> np.ndarray:
    """SMA10 of rows of 10 closes (oldest first): added left to right, as ``sum`` adds them (the
    reference adds to the integer 0 first, which changes no positive price), then divided by 10.
    NaN where a row holds NaN (fewer than 10 bars)."""
    total = closes[:, 0].copy()
    for k in range(1, SMA_N):
        total += closes[:, k]
    return total / SMA_N
