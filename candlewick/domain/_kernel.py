"""The candle rule as array code: many bars folded over their ticks in one step, bit for bit ``Bar.add``.

``fold`` takes ticks grouped by bar (each group's ticks contiguous, in applied order) and each
group's starting bar (or none: the group's first tick opens it, as ``Bar(...)`` does), and returns
every bar just after each of its ticks and at the end; with ``finals_only`` only the bars at the
end (what a store keeps), for less work. ``sma10`` adds closes left to right (as ``seqsum`` does;
``sum`` compensates from Python 3.12). No Python loop runs per tick or per group: the work is numpy
over whole columns.

Exactness. Open, close, high and low are selections (exact in any order of evaluation); the sums
(volume, price * volume, price) must be added one tick after the other, as ``Bar.add`` does,
because float addition is not associative. So each group is a column of a padded (length x groups)
matrix and the sums are ``np.add.accumulate`` along axis 0, which adds row after row; groups are
batched by length class (lengths in (2^(c-1), 2^c] padded to 2^c), so padding at most doubles the
work. Values are read only at each group's own rows, so the padding never reaches a result. A
group of one tick after its starting bar (the common case with many symbols) takes plain
elementwise arithmetic (``_add``: ``Bar.add`` of one tick to each of many bars).

The finals-only mode (``_finals``) needs no bar after each tick, so it applies rank k of every group
at once (``_add`` on the groups with more than k ticks after their starting bar, longest first so
they are a prefix); the much longer groups, where that would cost a vector step per tick, are finished together as
padded matrices (``_finish``): maxima, minima, the first of the earliest and the last of the latest
are selections, and the sums are ``np.add.accumulate`` along each bar's row, left to right.
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
        if index.dtype == bool:
            return BarColumns(vals=self.vals[index])
        return BarColumns(vals=self.vals.take(index, axis=0))

    def put(self, index: np.ndarray, other: BarColumns) -> None:
        """Write ``other``'s bars at ``index`` (positions or a mask)."""
        if index.dtype == bool:
            self.vals[index] = other.vals
        else:
            put_rows(self.vals, index, other.vals)

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
    high, low, close, volume, in the input's grouped order; None with ``finals_only``), and
    ``final``, each group's bar after all its ticks."""

    __slots__ = ("after", "final")

    def __init__(self, after: np.ndarray | None, final: BarColumns) -> None:
        self.after = after
        self.final = final

    @property
    def close(self) -> np.ndarray:
        return self.after[:, 3]


def put_rows(table: np.ndarray, at: np.ndarray, rows: np.ndarray) -> None:
    """``table[at] = rows`` for bars as (n, 10) float64 rows in C order (``at``: positions), with each
    row moved as one item: numpy's 2-D fancy assignment takes several times as long."""
    np.put(table.view(_ROW)[:, 0], at, np.ascontiguousarray(rows).view(_ROW)[:, 0])


_ROW = np.dtype((np.void, len(FIELDS) * 8))
"""A bar's row as one item (made once: a dtype made per call costs the collector)."""


def minute_of(ts: np.ndarray) -> np.ndarray:
    """The minute index of each trade time (``bucket_of(ts) // 60``): IEEE division, then floor."""
    return np.floor(ts / BUCKET).astype(np.int64)


def group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Where each run of equal values starts in ``sorted_keys`` (positions, ascending, from 0)."""
    if not len(sorted_keys):
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))


def fold(starts: np.ndarray, price: np.ndarray, ts: np.ndarray, volume: np.ndarray,
         init: BarColumns, has_init: np.ndarray, *, finals_only: bool = False) -> Folded:
    """Apply each group's ticks to its bar in order, as ``Bar.add`` would, all groups at once.

    ``starts``: where each group's ticks start (ascending, the first 0); ``price``/``ts``/``volume``:
    the ticks, grouped, each group in applied order. ``init``: the bar each group starts from where
    ``has_init`` holds; elsewhere the group's first tick opens the bar (``Bar(bucket, ...)``).
    ``finals_only``: only the final bars (``after`` is None), for less work."""
    if finals_only:
        return Folded(None, _finals(starts, price, ts, volume, init, has_init))
    n, g = len(ts), len(starts)
    lengths = np.diff(np.append(starts, n))
    group = np.repeat(np.arange(g), lengths)
    hi = has_init.astype(np.intp)
    row = np.arange(n) - starts[group] + hi[group]
    """Each tick's row in its group's column: row 0 is the starting bar."""
    seq = lengths + hi
    state = _opened(starts, price, ts, volume, init, has_init)
    """Each group's row 0; becomes its final bar."""
    after = np.column_stack((price, price, price, price, volume))
    """Right for a tick at row 0 (it opened its bar); the others are written below."""
    pairs = np.flatnonzero(seq == 2)
    if len(pairs):
        _fold_pair(pairs, np.flatnonzero(seq[group] == 2) if len(pairs) < g else np.arange(n), row, price, ts, volume,
                   state, after)
    klass = np.full(g, -1, dtype=np.intp)
    column = np.empty(g, dtype=np.intp)
    for c, (size, groups) in enumerate(_classes(seq, np.flatnonzero(seq > 2))):
        klass[groups] = c
        column[groups] = np.arange(len(groups))
        ticks = np.flatnonzero((klass[group] == c) & (row > 0))
        _fold_class(size, groups, seq[groups] - 1, ticks, column[group[ticks]], row[ticks], price, ts, volume,
                    state, after)
    state[:, COUNT] += seq - 1
    return Folded(after, BarColumns(vals=state))


def _finals(starts: np.ndarray, price: np.ndarray, ts: np.ndarray, volume: np.ndarray,
            init: BarColumns, has_init: np.ndarray) -> BarColumns:
    """``fold``'s finals-only mode: each group's bar after all its ticks, bit for bit ``Bar.add`` of
    them in order, without the bar after each tick."""
    n, g = len(ts), len(starts)
    if not g:
        return BarColumns(vals=init.vals.copy())
    hi = has_init.astype(np.intp)
    rest = np.diff(np.append(starts, n)) - 1 + hi
    """Each group's rows after row 0 (its ticks, less the one that opened it)."""
    stop = _stop(rest)
    # longest first, so the groups with k rows or more after row 0 are a prefix, for each k < stop
    # (the key fits 16 bits, which numpy sorts by radix: ``_stop`` never steps that far)
    order = np.argsort((stop - np.minimum(rest, stop)).astype(np.uint16), kind="stable")
    rest = rest[order]
    desc = -np.minimum(rest, stop)
    first = (starts - hi)[order]
    """Where each group's row k is: ``first + k``."""
    s = np.ascontiguousarray(_opened(starts, price, ts, volume, init, has_init, order).T)
    for k in range(1, stop):
        m = int(desc.searchsorted(-k, "right"))
        at = first[:m] + k
        _add(s[:, :m], price.take(at), ts.take(at), volume.take(at))
    m = int(desc.searchsorted(-stop, "right"))
    if m:
        _finish(s[:, :m], first[:m] + stop, rest[:m] - (stop - 1), price, ts, volume)
    s[COUNT] += rest
    back = np.empty_like(order)
    back[order] = np.arange(g)
    return BarColumns(vals=np.ascontiguousarray(s.T).take(back, axis=0))


STEPS_MAX = 60_000
"""``_finals`` steps no further than this rank (it sorts by rank up to there in 16 bits)."""
STEP, FINISH, FINISH_ROW = 1.0, 3.0, 0.01
"""What ``_finals`` costs, roughly, in vector steps of rank k (about a dozen numpy calls): one
step; ``_finish`` about three, and a hundredth per row it takes (its padded matrices). Measured on
the memory store's writes: at 100 symbols (about 80 ticks a candle) it steps to about rank 90."""


def _stop(rest: np.ndarray) -> int:
    """The rank at which ``_finals`` stops stepping and finishes the longer groups together
    (``_finish``): the one of least estimated cost. ``rest``: each group's rows after row 0."""
    longest = int(rest.max())
    alive = np.bincount(rest, minlength=longest + 1)[::-1].cumsum()[::-1]
    """Groups with at least k rows after row 0, k = 0 .. longest."""
    left = np.append(alive[::-1].cumsum()[::-1], 0)
    """Rows at rank k or after, k = 0 .. longest + 1: what finishing at rank k takes."""
    stops = np.arange(1, min(longest, STEPS_MAX) + 2)
    cost = (stops - 1) * STEP + np.where(left[stops] > 0, FINISH + FINISH_ROW * left[stops], 0.0)
    return int(stops[np.argmin(cost)])


def _finish(s: np.ndarray, first: np.ndarray, count: np.ndarray, price: np.ndarray, ts: np.ndarray,
            volume: np.ndarray) -> None:
    """Apply the ticks ``first[j]`` .. ``first[j] + count[j] - 1`` to bar j of ``s`` (fields first), in
    order, all bars at once: a class of bars at a time (``_classes``), as (bars x length) matrices."""
    for size, groups in _classes(count, np.arange(len(count))):
        cnt, a = count[groups], first[groups]
        # a bar's ticks, padded with its last tick again (which changes no selection)
        at = np.minimum(a[:, None] + np.arange(size), (a + cnt - 1)[:, None])
        p, t = price.take(at), ts.take(at)
        bar = s[:, groups]
        cells = np.arange(len(groups)) * size
        earliest = cells + t.argmin(axis=1)  # the first of the earliest
        latest = cells + size - 1 - t[:, ::-1].argmax(axis=1)  # the last of the latest
        _ends(bar, p.take(earliest), t.take(earliest), p.take(latest), t.take(latest))
        np.maximum(bar[HIGH], p.max(axis=1), out=bar[HIGH])
        np.minimum(bar[LOW], p.min(axis=1), out=bar[LOW])
        # the sums: each bar's row of (its sum so far, then its ticks' values), added left to right
        sums = np.empty((3, len(groups), size + 1))
        sums[:, :, 0] = bar[VOLUME:PSUM + 1]
        sums[0, :, 1:] = volume.take(at)
        np.multiply(p, sums[0, :, 1:], out=sums[1, :, 1:])
        sums[2, :, 1:] = p
        np.add.accumulate(sums, axis=2, out=sums)
        bar[VOLUME:PSUM + 1] = sums.reshape(3, -1)[:, cells + np.arange(len(groups)) + cnt]
        s[:, groups] = bar


def _opened(starts: np.ndarray, price: np.ndarray, ts: np.ndarray, volume: np.ndarray, init: BarColumns,
            has_init: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Each group's row 0, as (groups, 10) rows: its starting bar, or the bar its first tick opens
    (``Bar(bucket, price, ts, volume)``) where it has none; the groups in ``order`` if given."""
    if order is None:
        state = init.vals.copy()
    else:
        state, starts, has_init = init.vals.take(order, axis=0), starts[order], has_init[order]
    opens = np.flatnonzero(~has_init)
    if len(opens):
        first = starts[opens]
        p0, t0, v0 = price[first], ts[first], volume[first]
        put_rows(state, opens, np.column_stack((p0, t0, p0, p0, p0, t0, v0, p0 * v0, p0, np.ones(len(opens)))))
    return state


def _add(s: np.ndarray, p: np.ndarray, t: np.ndarray, v: np.ndarray) -> None:
    """``Bar.add`` of one tick (``p``, ``t``, ``v``) to each of many bars, in place. ``s`` is the
    bars fields first (``s[HIGH]`` is the high of every bar: a view of (bars, 10) rows transposed
    will do)."""
    _ends(s, p, t, p, t)
    np.maximum(s[HIGH], p, out=s[HIGH])
    np.minimum(s[LOW], p, out=s[LOW])
    s[VOLUME] += v
    s[PV] += p * v
    s[PSUM] += p


def _ends(s: np.ndarray, p_open: np.ndarray, t_open: np.ndarray, p_close: np.ndarray, t_close: np.ndarray) -> None:
    """The open and close rule, in place on ``s`` (fields first): a trade strictly earlier than the
    open becomes the open; one not earlier than the close becomes the close."""
    earlier, later = t_open < s[OPEN_TS], t_close >= s[CLOSE_TS]
    np.copyto(s[OPEN], p_open, where=earlier)
    np.copyto(s[OPEN_TS], t_open, where=earlier)
    np.copyto(s[CLOSE], p_close, where=later)
    np.copyto(s[CLOSE_TS], t_close, where=later)


def _classes(seq: np.ndarray, groups: np.ndarray):
    """``groups`` (with ``seq[g]`` rows each) in classes that pad to at most twice their rows:
    longest first, each class as long as its longest and taking shorter groups while the padded
    cells stay within twice the rows. Yields (rows, groups) per class."""
    if not len(groups):
        return
    order = groups[np.argsort(-seq[groups], kind="stable")]
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
    _add(s.T, price[ticks], ts[ticks], volume[ticks])
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
