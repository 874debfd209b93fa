"""SMA10 of every new tick of a batch, as the per-tick book computes it: over the closes as they stand at that tick.

A tick's SMA10 adds the closes of its bar and of the 9 bars before it, as they are just after the
tick: a late tick into an older bar changes that bar's close for every later tick of the batch, and
a bar that a later tick of the batch creates is not there yet. ``smas`` answers this for all the
ticks at once, in three ways:

- a row whose every tick goes to its newest bar (nearly all of them in a steady stream) adds its
  cached sum of the 9 closes before that bar (``prev9``) to each tick's close;
- a row whose every tick goes to one new newest bar sums its last 9 bars' closes (the batch does
  not touch them) and does the same;
- any other row (busy) gets a window: its bars from 9 below the lowest one the batch touches, and
  the bars the batch creates, sorted by minute. A tick's predecessors are the 9 window entries below
  its bar, but for bars created after the tick; where no bar of the row was created below an older
  one, none is, and the 9 entries below are taken at once, else the row's ticks walk down a step at
  a time (all such ticks together). A predecessor's close at the tick is its close after its last
  tick before this one, else its close before the batch.

The 9 predecessors of each busy row's newest bar at the end of the batch give its new ``prev9``.
"""

from __future__ import annotations

import numpy as np

from candlewick.domain._candles import SMA_N
from candlewick.domain._kernel import group_starts, sma10
from candlewick.domain._rowbars import RowBars

_BACK = np.arange(SMA_N - 1, 0, -1)
"""Offsets of the 9 predecessors, oldest first."""


def sum9(closes: np.ndarray) -> np.ndarray:
    """The 9 closes of each row added left to right (``sum`` of a list of them): ``prev9``."""
    total = closes[:, 0].copy()
    for k in range(1, SMA_N - 1):
        total += closes[:, k]
    return total


class Batch:
    """The new ticks of a batch, grouped by bar (row, minute), each group in arrival order."""

    __slots__ = ("pos", "starts", "group", "row", "minute", "rank", "exists", "close", "inputs")

    def __init__(self, pos, starts, group, row, minute, rank, exists, close, inputs) -> None:
        self.pos = pos
        """Each tick's position in the input (grouped order)."""
        self.starts, self.group = starts, group
        """Where each group starts; each tick's group."""
        self.row, self.minute, self.rank, self.exists = row, minute, rank, exists
        """Per group: its row and minute, its bar's index among the row's bars before the batch (or
        the index it takes), whether that bar was there."""
        self.close = close
        """Each tick's bar's close just after it."""
        self.inputs = inputs
        """Ticks in the input (a position past every tick)."""


def smas(bars: RowBars, prev9: np.ndarray, b: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SMA10 of each tick (grouped order, NaN without 10 bars), and the rows whose ``prev9`` changed
    with their new values."""
    sma = np.empty(len(b.pos))
    n = bars.n[b.row]
    heads = group_starts(b.row)
    single = np.zeros(len(b.row), dtype=bool)
    single[heads] = np.diff(np.append(heads, len(b.row))) == 1
    plain = single & b.exists & (b.rank == n - 1)
    easy = plain | single & ~b.exists & (b.rank == n)
    fresh = np.flatnonzero(easy & ~plain)
    p9 = prev9[b.row]
    if len(fresh):
        last = bars.base[b.row[fresh]] + n[fresh] - 1
        closes = bars.bars.close[np.maximum(last[:, None] - _BACK + 1, 0)]
        p9[fresh] = np.where(n[fresh] >= SMA_N - 1, sum9(closes), np.nan)
    at = easy[b.group]
    sma[at] = (p9[b.group[at]] + b.close[at]) / SMA_N
    busy = heads[~easy[heads]]
    if not len(busy):
        return sma, b.row[fresh], p9[fresh]
    ticks = np.flatnonzero(~at)
    busy_sma, busy_prev9 = _Window(bars, b, n, heads, busy).smas(ticks)
    sma[ticks] = busy_sma
    return sma, np.concatenate((b.row[busy], b.row[fresh])), np.concatenate((busy_prev9, p9[fresh]))


class _Window:
    """The busy rows' windows: entries sorted by (row, minute), each with its close before the
    batch, the group that touches it (-1: none) and the input position that created it (-1: there
    before the batch)."""

    def __init__(self, bars: RowBars, b: Batch, n: np.ndarray, heads: np.ndarray, busy: np.ndarray) -> None:
        self.b = b
        last = np.append(heads, len(b.row))[np.searchsorted(heads, busy) + 1]
        groups = _ranges(busy, last)
        """The groups of the busy rows, ascending (row after row)."""
        owner = np.repeat(np.arange(len(busy)), last - busy)
        """Each of those groups' busy row (0, 1, ... in ``busy``'s order)."""
        lo = np.maximum(b.rank[busy] - (SMA_N - 1), 0)
        src, src_owner = bars.slots_of(b.row[busy], lo)
        new = ~b.exists[groups]
        made = groups[new]
        who = np.concatenate((src_owner, owner[new]))
        order = np.lexsort((np.concatenate((bars.minute[src], b.minute[made])), who))
        self.close0 = np.concatenate((bars.bars.close[src], np.full(len(made), np.nan)))[order]
        self.birth = np.concatenate((np.full(len(src), -1), b.pos[b.starts[made]]))[order]
        self.start = group_starts(who[order])
        """Each busy row's first entry."""
        # each touched group's entry: a bar that was there sits at its rank less the window's first
        place = np.empty(len(order), dtype=np.intp)
        place[order] = np.arange(len(order))
        counts = np.bincount(src_owner, minlength=len(busy))
        old, of_old = groups[~new], owner[~new]
        self.entry = np.empty(len(b.row), dtype=np.intp)
        self.entry[old] = place[(np.cumsum(counts) - counts)[of_old] + b.rank[old] - lo[of_old]]
        self.entry[made] = place[len(src) + np.arange(len(made))]
        self.group_of = np.full(len(order), -1, dtype=np.intp)
        self.group_of[self.entry[groups]] = groups
        self.groups, self.owner, self.busy = groups, owner, busy
        self.straight = _orderly(b, n, made, owner[new], len(busy))

    def smas(self, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SMA10 of ``ticks`` (the busy rows' ticks) and each busy row's new ``prev9``."""
        b = self.b
        rows = np.concatenate((self.owner[np.searchsorted(self.groups, b.group[ticks])], np.arange(len(self.busy))))
        ends = np.append(self.start[1:], len(self.birth)) - 1
        q = np.concatenate((self.entry[b.group[ticks]], ends))
        """Each query's entry: a tick's bar; each row's newest bar at the end of the batch."""
        p = np.concatenate((b.pos[ticks], np.full(len(self.busy), b.inputs)))
        lowest = self.start[rows]
        pred = q[:, None] - _BACK
        ok = (pred >= lowest[:, None]).all(axis=1)
        winding = np.flatnonzero(~self.straight[rows])
        if len(winding):
            pred[winding], ok[winding] = _walk(q[winding], p[winding], lowest[winding], self.birth)
        closes = self._closes_at(pred.clip(0), np.repeat(p, SMA_N - 1).reshape(pred.shape))
        closes[~ok] = np.nan
        k = len(ticks)
        return sma10(np.hstack((closes[:k], b.close[ticks][:, None]))), sum9(closes[k:])

    def _closes_at(self, pred: np.ndarray, at: np.ndarray) -> np.ndarray:
        """The close of each entry ``pred`` just before input position ``at``: after its group's last
        tick before ``at``, else its close before the batch."""
        b = self.b
        g = self.group_of[pred]
        out = self.close0[pred]
        touched = g >= 0
        if touched.any():
            span = b.inputs + 1
            keys = b.group.astype(np.int64) * span + b.pos
            j = np.searchsorted(keys, g[touched].astype(np.int64) * span + at[touched]) - 1
            mine = j >= b.starts[g[touched]]
            vals = out[touched]
            vals[mine] = b.close[j[mine]]
            out[touched] = vals
        return out


def _ranges(a: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The integers of ``a[i] .. z[i] - 1`` for each i, concatenated."""
    count = z - a
    offsets = np.cumsum(count) - count
    return np.repeat(a - offsets, count) + np.arange(int(count.sum()))


def _orderly(b: Batch, n: np.ndarray, made: np.ndarray, owner: np.ndarray, rows: int) -> np.ndarray:
    """Per busy row: whether each bar the batch creates there (``made``, row after row by minute;
    ``owner``: their busy rows) is above every bar the row had (``n``, per group: how many), and
    they were created oldest first. Then no bar is created after a tick above it, and a tick's
    predecessors are the 9 window entries below its bar."""
    bad = np.zeros(rows, dtype=bool)
    bad[owner[b.rank[made] < n[made]]] = True
    births = b.pos[b.starts[made]]
    bad[owner[1:][(owner[1:] == owner[:-1]) & (births[1:] < births[:-1])]] = True
    return ~bad


def _walk(q: np.ndarray, p: np.ndarray, lowest: np.ndarray, birth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predecessors found one step down at a time from each query's entry ``q``, skipping entries
    created at or after its position ``p``, down to ``lowest``; and whether all 9 were found."""
    need = np.full(len(q), SMA_N - 1)
    pred = np.zeros((len(q), SMA_N - 1), dtype=np.intp)
    idx = q - 1
    while True:
        a = np.flatnonzero((need > 0) & (idx >= lowest))
        if not len(a):
            return pred, need == 0
        e = idx[a]
        take = birth[e] < p[a]
        t = a[take]
        pred[t, need[t] - 1] = e[take]
        need[t] -= 1
        idx[a] -= 1
