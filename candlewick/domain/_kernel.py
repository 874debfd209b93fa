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
work. Values are read only at each group's own rows, so the padding never reaches a result. A
group of one tick after its starting bar (the common case with many symbols) takes plain
elementwise arithmetic.
"""

from __future__ import annotations

import numpy as np

from candlewick.domain._candles import BUCKET, SMA_N
from candlewick.schema import Bar

FIELDS = ("open", "open_ts", "high", "low", "close", "close_ts", "volume", "pv", "psum", "count")
"""The columns of ``BarColumns.vals``, in order (``count`` as float64: exact to 2^53)."""
OPEN, OPEN_TS, HIGH, LOW, CLOSE, CLOSE_TS, VOLUME, PV, PSUM, COUNT = range(len(FIELDS))
_LAYERS = [CLOSE_TS, HIGH, OPEN_TS, LOW, VOLUME, PV, PSUM]
"""A class matrix's layers: two running maxima, two running minima, three running sums."""
_PADS = np.array([-np.inf, -np.inf, np.inf, np.inf, 0.0, 0.0, 0.0])[:, None]


class BarColumns:
    """Bars as one (n, 10) float64 array, a row per bar: the fields of ``schema.Bar`` but ``bucket``
    (``FIELDS``); each field is also a property giving its column (a view)."""

    __slots__ = ("vals",)

    def __init__(self, n: int = 0, vals: np.ndarray | None = None) -> None:
        self.vals = np.zeros((n, len(FIELDS))) if vals is None else vals

    def __len__(self) -> int:
        return len(self.vals)

    def take(self, index: np.ndarray) -> BarColumns:
        """The bars at ``index`` (positions or a mask), copied."""
        return BarColumns(vals=self.vals[index])

    def put(self, index: np.ndarray, other: BarColumns) -> None:
        """Write ``other``'s bars at ``index``."""
        self.vals[index] = other.vals

    def bar(self, i: int, bucket: int) -> Bar:
        """Bar ``i`` as a ``schema.Bar``."""
        bar = Bar.__new__(Bar)
        bar.bucket = bucket
        for name, value in zip(FIELDS, self.vals[i].tolist(), strict=True):
            setattr(bar, name, value)
        bar.count = int(bar.count)
        return bar

    @classmethod
    def of(cls, bars) -> BarColumns:
        """Columns of ``schema.Bar`` objects (in order)."""
        rows = [[getattr(b, name) for name in FIELDS] for b in bars]
        return cls(vals=np.array(rows, dtype=np.float64).reshape(len(rows), len(FIELDS)))


for _k, _name in enumerate(FIELDS):
    setattr(BarColumns, _name, property(lambda self, k=_k: self.vals[:, k], doc=f"The {_name} column (a view)."))


class Folded:
    """What ``fold`` returns: the bar just after each tick (``after``: an (n, 5) array of open,
    high, low, close, volume, in the input's grouped order), and ``final``, each group's bar after
    all its ticks."""

    __slots__ = ("after", "final")

    def __init__(self, after: np.ndarray, final: BarColumns) -> None:
        self.after = after
        self.final = final

    @property
    def close(self) -> np.ndarray:
        return self.after[:, 3]


def minute_of(ts: np.ndarray) -> np.ndarray:
    """The minute index of each trade time (``bucket_of(ts) // 60``): IEEE division, then floor."""
    return np.floor(ts / BUCKET).astype(np.int64)


def group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Where each run of equal values starts in ``sorted_keys`` (positions, ascending, from 0)."""
    if not len(sorted_keys):
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))


def fold(starts: np.ndarray, price: np.ndarray, ts: np.ndarray, volume: np.ndarray,
         init: BarColumns, has_init: np.ndarray) -> Folded:
    """Apply each group's ticks to its bar in order, as ``Bar.add`` would, all groups at once.

    ``starts``: where each group's ticks start (ascending, the first 0); ``price``/``ts``/``volume``:
    the ticks, grouped, each group in applied order. ``init``: the bar each group starts from where
    ``has_init`` holds; elsewhere the group's first tick opens the bar (``Bar(bucket, ...)``)."""
    n, g = len(ts), len(starts)
    lengths = np.diff(np.append(starts, n))
    group = np.repeat(np.arange(g), lengths)
    hi = has_init.astype(np.intp)
    row = np.arange(n) - starts[group] + hi[group]
    """Each tick's row in its group's column: row 0 is the starting bar."""
    seq = lengths + hi
    state = init.vals.copy()
    """Each group's row 0; becomes its final bar."""
    opens = np.flatnonzero(~has_init)
    if len(opens):
        first = starts[opens]
        p0, t0, v0 = price[first], ts[first], volume[first]
        state[opens] = np.column_stack((p0, t0, p0, p0, p0, t0, v0, p0 * v0, p0, np.ones(len(opens))))
    after = np.column_stack((price, price, price, price, volume))
    """Right for a tick at row 0 (it opened its bar); the others are written below."""
    pairs = np.flatnonzero(seq == 2)
    if len(pairs):
        _fold_pair(pairs, np.flatnonzero(seq[group] == 2) if len(pairs) < g else np.arange(n), row, price, ts, volume,
                   state, after)
    klass = np.full(g, -1, dtype=np.intp)
    column = np.empty(g, dtype=np.intp)
    for c, (size, groups) in enumerate(_classes(seq)):
        klass[groups] = c
        column[groups] = np.arange(len(groups))
        ticks = np.flatnonzero((klass[group] == c) & (row > 0))
        _fold_class(size, groups, seq[groups] - 1, ticks, column[group[ticks]], row[ticks], price, ts, volume,
                    state, after)
    state[:, COUNT] += seq - 1
    return Folded(after, BarColumns(vals=state))


def _classes(seq: np.ndarray):
    """The groups of more than two rows, in classes that pad to at most twice their rows: longest
    first, each class as long as its longest and taking shorter groups while the padded cells stay
    within twice the rows. Yields (rows, groups) per class."""
    longer = np.flatnonzero(seq > 2)
    if not len(longer):
        return
    order = longer[np.argsort(-seq[longer], kind="stable")]
    s = seq[order]
    total = np.concatenate(([0], np.cumsum(s)))
    i = 0
    while i < len(s):
        size = int(s[i])
        j = np.arange(i + 1, len(s) + 1)
        ok = size * (j - i) <= 2 * (total[j] - total[i])
        end = len(s) if ok.all() else i + int(ok.argmin())
        yield size, order[i:end]
        i = end


def _fold_pair(groups: np.ndarray, ticks: np.ndarray, row: np.ndarray, price: np.ndarray, ts: np.ndarray,
               volume: np.ndarray, state: np.ndarray, after: np.ndarray) -> None:
    """Groups of two rows (``ticks``: their ticks, any row): ``Bar.add`` of the row-1 tick as
    elementwise arithmetic."""
    ticks = ticks[row[ticks] == 1]
    every = len(groups) == len(state)
    s = state if every else state[groups]
    p, t, v = price[ticks], ts[ticks], volume[ticks]
    earlier, later = t < s[:, OPEN_TS], t >= s[:, CLOSE_TS]
    s[:, OPEN] = np.where(earlier, p, s[:, OPEN])
    s[:, OPEN_TS] = np.where(earlier, t, s[:, OPEN_TS])
    s[:, CLOSE] = np.where(later, p, s[:, CLOSE])
    s[:, CLOSE_TS] = np.where(later, t, s[:, CLOSE_TS])
    np.maximum(s[:, HIGH], p, out=s[:, HIGH])
    np.minimum(s[:, LOW], p, out=s[:, LOW])
    s[:, VOLUME] += v
    s[:, PV] += p * v
    s[:, PSUM] += p
    if not every:
        state[groups] = s
    after[ticks] = s[:, [OPEN, HIGH, LOW, CLOSE, VOLUME]]


def _fold_class(size: int, groups: np.ndarray, end: np.ndarray, ticks: np.ndarray, col: np.ndarray, row: np.ndarray,
                price: np.ndarray, ts: np.ndarray, volume: np.ndarray, state: np.ndarray, after: np.ndarray) -> None:
    """``fold`` for the groups of one length class: the columns of (size x width) matrices, one per
    running quantity. ``end``: each group's last row; ``ticks``: the class's ticks past row 0, with
    their column and row."""
    width = len(groups)
    cells = size * width
    flat = row * width + col
    s = state[groups]
    p, t, v = price[ticks], ts[ticks], volume[ticks]
    m = np.empty((len(_LAYERS), cells))
    m[:] = _PADS
    m[:, :width] = s[:, _LAYERS].T
    m[:, flat] = (t, p, t, p, v, p * v, p)
    m3 = m.reshape(len(_LAYERS), size, width)
    np.maximum.accumulate(m3[0:2], axis=1, out=m3[0:2])
    np.minimum.accumulate(m3[2:4], axis=1, out=m3[2:4])
    np.add.accumulate(m3[4:7], axis=1, out=m3[4:7])
    # the row that set the open (strictly earlier than all before it) and the close (not earlier
    # than the latest before it): the newest such row up to each row; 0 is the starting bar
    before = flat - width
    rows = np.zeros((2, cells), dtype=np.intp)
    rows[0, flat] = np.where(t < m[2, before], row, 0)
    rows[1, flat] = np.where(t >= m[0, before], row, 0)
    np.maximum.accumulate(rows.reshape(2, size, width), axis=1, out=rows.reshape(2, size, width))
    prices = np.empty(cells)
    prices[flat] = p
    cell = end * width + np.arange(width)
    at = np.concatenate((flat, cell))
    which = rows[:, at]
    base = np.concatenate((col, np.arange(width)))
    oc = np.where(which > 0, prices[which * width + base], s[base][:, [OPEN, CLOSE]].T)
    k = len(ticks)
    after[ticks] = np.column_stack((oc[0, :k], m[1, flat], m[3, flat], oc[1, :k], m[4, flat]))
    s[:, OPEN], s[:, CLOSE] = oc[0, k:], oc[1, k:]
    s[:, [CLOSE_TS, HIGH, OPEN_TS, LOW, VOLUME, PV, PSUM]] = m[:, cell].T
    state[groups] = s


def sma10(closes: np.ndarray) -> np.ndarray:
    """SMA10 of rows of 10 closes (oldest first): added left to right, as ``sum`` adds them (the
    reference adds to the integer 0 first, which changes no positive price), then divided by 10.
    NaN where a row holds NaN (fewer than 10 bars)."""
    total = closes[:, 0].copy()
    for k in range(1, SMA_N):
        total += closes[:, k]
    return total / SMA_N
