"""The bars of many rows (symbols) in one set of columns: each row's bars sorted by minute in a segment of its own.

A row's bars sit at ``base[row] .. base[row] + n[row]`` of the columns, oldest first, inside its
segment ``seg[row] .. end[row]``. New bars are appended in place when they are the row's newest and
the segment has room; otherwise the row's bars are rewritten, in its segment if they fit, else in a
new segment a quarter again their number at the end of the columns. Forgetting old bars only moves
``base``. Segments left behind are garbage, reclaimed when the columns are full: every row is then
packed afresh into columns a quarter larger than the packed rows (so they hold about 1.25 to 2 slots
a bar, and shrink when symbols quiet down). ``first[row]`` counts
the row's bars below its floor minute (``base + first`` is its first changeable bar); every
operation is vectorized over rows.
"""

from __future__ import annotations

import numpy as np

from candlewick.domain._kernel import BarColumns

MIN_SEGMENT = 4


def segment(bars: np.ndarray) -> np.ndarray:
    """The size of a new segment for rows of ``bars`` bars: a quarter again as many (``MIN_SEGMENT``
    at least; none for no bars). A row whose bars only come and go (a minute added, the oldest cut)
    rewrites them in place at the segment's start once in ``bars // 4`` new minutes."""
    return np.where(bars > 0, np.maximum(bars + bars // 4, MIN_SEGMENT), 0)


class RowBars:
    """Bars of many rows, as columns: ``minute`` (int64), the ``BarColumns`` fields, and ``keys``
    (int32: the keys remembered in the bar's minute)."""

    __slots__ = ("minute", "bars", "keys", "seg", "end", "base", "n", "first", "top")

    def __init__(self, capacity: int = 64) -> None:
        self.minute = np.zeros(capacity, dtype=np.int64)
        self.bars = BarColumns(capacity)
        self.keys = np.zeros(capacity, dtype=np.int32)
        self.seg = np.zeros(0, dtype=np.int64)
        self.end = np.zeros(0, dtype=np.int64)
        self.base = np.zeros(0, dtype=np.int64)
        self.n = np.zeros(0, dtype=np.int64)
        self.first = np.zeros(0, dtype=np.int64)
        self.top = 0
        """The columns' high-water mark: segments are carved from here on."""

    @property
    def nbytes(self) -> int:
        return self.minute.nbytes + self.keys.nbytes + self.bars.vals.nbytes + 5 * 8 * len(self.n)

    def add_rows(self, count: int) -> None:
        """Room for ``count`` more rows (each with no bars)."""
        for name in ("seg", "end", "base", "n", "first"):
            setattr(self, name, np.concatenate((getattr(self, name), np.zeros(count, dtype=np.int64))))

    def slots_of(self, rows: np.ndarray, lo: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The slots of ``rows``' bars from index ``lo`` (per row; default 0) on, row after row,
        and the row (position in ``rows``) of each."""
        start = self.base[rows] + (0 if lo is None else lo)
        count = self.base[rows] + self.n[rows] - start
        owner = np.repeat(np.arange(len(rows)), count)
        offsets = np.cumsum(count) - count
        return np.repeat(start, count) + np.arange(owner.size) - offsets[owner], owner

    # -- lookups ------------------------------------------------------------------------------
    def locate(self, rows: np.ndarray, minutes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each (row, minute): the index its bar has (or would take) among the row's bars, and
        whether that bar exists. The row's newest bar is checked first, then a binary search."""
        base, n = self.base[rows], self.n[rows]
        last = base + n - 1
        newest = self.minute[np.maximum(last, 0)]
        rank = n.copy()
        exists = (n > 0) & (newest == minutes)
        rank[exists] -= 1
        inside = np.flatnonzero((n > 0) & (newest > minutes))
        if len(inside):
            lo, hi, m = base[inside], last[inside], minutes[inside]
            while True:
                go = lo < hi
                if not go.any():
                    break
                mid = (lo + hi) >> 1
                right = go & (self.minute[mid] < m)
                lo = np.where(right, mid + 1, lo)
                hi = np.where(go & ~right, mid, hi)
            rank[inside] = lo - base[inside]
            exists[inside] = self.minute[lo] == m
        return rank, exists

    # -- changes ------------------------------------------------------------------------------
    def reserve(self, rows: np.ndarray, counts: np.ndarray) -> None:
        """Make room for a ``write`` of ``counts`` new bars to each of ``rows``: when the columns
        lack it, every row is packed afresh into columns sized to what is live (so they shrink as well
        as grow), and grown if that is not enough."""
        if self.top + self.room_needed(rows, counts) <= len(self.minute):
            return
        self.pack()
        need = self.top + self.room_needed(rows, counts)
        if need > len(self.minute):
            self._resize(need * 5 // 4)

    def _resize(self, size: int) -> None:
        self.minute = _grow(self.minute, size)
        self.keys = _grow(self.keys, size)
        self.bars = BarColumns(vals=_grow(self.bars.vals, size))

    def pack(self) -> None:
        """Rewrite every row into a fresh segment (``segment``), in columns a quarter larger than
        the segments, for those carved after it."""
        rows = np.arange(len(self.n))
        caps = segment(self.n)
        top = int(caps.sum())
        size = max(MIN_SEGMENT, top * 5 // 4)
        src, owner = self.slots_of(rows)
        seg = np.cumsum(caps) - caps
        dst = seg[owner] + (src - self.base[owner])
        minute, keys = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.int32)
        minute[dst], keys[dst] = self.minute[src], self.keys[src]
        bars = BarColumns(size)
        bars.put(dst, self.bars.take(src))
        self.minute, self.keys, self.bars = minute, keys, bars
        self.seg, self.base, self.end = seg, seg.copy(), seg + caps
        self.top = top

    def room_needed(self, rows: np.ndarray, counts: np.ndarray) -> int:
        """Slots that a ``write`` of ``counts`` new bars to each of ``rows`` may carve at the top."""
        total = self.n[rows] + counts
        moved = self.seg[rows] + total > self.end[rows]
        return int(segment(total[moved]).sum())

    def write(self, rows: np.ndarray, counts: np.ndarray, minutes: np.ndarray, values: BarColumns,
              keys: np.ndarray) -> None:
        """Add new bars: ``counts[i]`` of them to ``rows[i]`` (distinct rows), given row after row,
        sorted by minute within a row, none at a minute the row already has. ``reserve`` first."""
        base, n, end = self.base[rows], self.n[rows], self.end[rows]
        owner = np.repeat(np.arange(len(rows)), counts)
        offsets = np.cumsum(counts) - counts
        newest = self.minute[np.maximum(base + n - 1, 0)]
        append = ((n == 0) | (minutes[offsets] > newest)) & (base + n + counts <= end)
        a = append[owner]
        dst = (base + n - offsets)[owner[a]] + np.flatnonzero(a)
        self._put(dst, minutes[a], values.take(a), keys[a])
        self.n[rows[append]] += counts[append]
        redo = np.flatnonzero(~append)
        if len(redo):
            self._rewrite(rows[redo], counts[redo], ~a, minutes, values, keys)

    def _rewrite(self, rows: np.ndarray, counts: np.ndarray, new: np.ndarray, minutes: np.ndarray,
                 values: BarColumns, keys: np.ndarray) -> None:
        """Merge new bars (``new`` selects them, row after row) into ``rows``' bars by minute, in the
        row's segment if they fit, else in a new one carved at the top."""
        src, owner = self.slots_of(rows)
        who = np.concatenate((owner, np.repeat(np.arange(len(rows)), counts)))
        m_all = np.concatenate((self.minute[src], minutes[new]))
        order = np.lexsort((m_all, who))
        cols = BarColumns(vals=np.concatenate((self.bars.vals[src], values.vals[new]))[order])
        kept = np.concatenate((self.keys[src], keys[new]))[order]
        m_all, who = m_all[order], who[order]
        total = self.n[rows] + counts
        moved = np.flatnonzero(self.seg[rows] + total > self.end[rows])
        caps = segment(total[moved])
        carve = np.cumsum(caps) - caps + self.top
        self.seg[rows[moved]], self.end[rows[moved]] = carve, carve + caps
        self.top += int(caps.sum())
        start = self.seg[rows]
        offsets = np.cumsum(total) - total
        self._put((start - offsets)[who] + np.arange(len(who)), m_all, cols, kept)
        self.base[rows] = start
        self.n[rows] = total

    def _put(self, dst: np.ndarray, minutes: np.ndarray, values: BarColumns, keys: np.ndarray) -> None:
        self.minute[dst] = minutes
        self.bars.put(dst, values)
        self.keys[dst] = keys

    def cut(self, rows: np.ndarray, counts: np.ndarray) -> None:
        """Forget the ``counts`` oldest bars of ``rows``."""
        self.base[rows] += counts
        self.n[rows] -= counts
        self.first[rows] -= counts

    def clear(self, row: int) -> None:
        self.base[row] = self.seg[row]
        self.n[row] = self.first[row] = 0


def _grow(a: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, *a.shape[1:]), dtype=a.dtype)
    out[:len(a)] = a
    return out
