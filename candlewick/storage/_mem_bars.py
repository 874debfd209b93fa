"""Every symbol's candles of every interval as columns: the newest per (symbol, interval) in a dense table, older ones in sorted runs.

A (symbol, interval) pair is a slot, ``code * len(SECONDS) + interval index``. Its newest candle
(where nearly every tick lands) is a row of ``hot`` (the domain's ``BarColumns``), found by index; its older (closed) candles are
rows of sorted runs keyed (slot, bucket) (``_mem_runs``), found by ``searchsorted``. A write folds
its ticks into every interval's candles at once with the domain's candle rule (``fold``, finals
only: bit for bit ``Bar.add`` in arrival order), so ``read`` of any interval is one bounded probe per run:
O(limit) rows. Retention is a floor per interval (older candles are not read, and are cut from the
runs from time to time).
See docs/ARCHITECTURE.md, "Storage" (memory store).
"""

from __future__ import annotations

import numpy as np

from candlewick.domain import INTERVALS, BarColumns, fold, interval_origin
from candlewick.storage._mem_runs import Runs, key_of

SECONDS = np.array(sorted(INTERVALS.values()), dtype=np.float64)
ORIGINS = np.array([interval_origin(int(s)) for s in SECONDS], dtype=np.float64)
INDEX = {int(s): i for i, s in enumerate(SECONDS)}
"""Interval seconds -> its index in a slot."""
NI = len(SECONDS)
BAR_RUN_CAP = 1 << 21
"""The longest run merges make (160 MB of candles)."""
KEEP_CANDLES = 2_000
"""Candles of 5m and longer are kept for this many of their intervals (a full page at the largest
``limit``), or for ``bar_seconds``, whichever is longer."""
CUT_EVERY = 0.125
"""Runs are scanned for candles below the floor once per this fraction of ``bar_seconds``."""
INF = float("inf")
NONE = BarColumns(0).vals
"""No candles, as rows."""


class Bars:
    """Candles of every interval of every symbol."""

    __slots__ = ("hot_bucket", "hot", "runs", "floor", "cut_at", "rows_read")

    def __init__(self) -> None:
        self.hot_bucket = np.zeros(0)
        """The newest candle's bucket of each slot (-inf: none yet). Every other candle of a slot is older."""
        self.hot = BarColumns(0)
        self.runs = Runs(BAR_RUN_CAP)
        self.floor = np.full(NI, -INF)
        """Per interval: candles with bucket < floor are past retention."""
        self.cut_at = -INF
        self.rows_read = 0

    def grow(self, symbols: int) -> None:
        """Make room for ``symbols`` symbol codes."""
        have = len(self.hot_bucket)
        need = symbols * NI
        if need <= have:
            return
        size = max(need, 2 * have, 64 * NI)
        bucket = np.full(size, -INF)
        bucket[:have] = self.hot_bucket
        hot = BarColumns(size)
        hot.vals[:have] = self.hot.vals
        self.hot_bucket, self.hot = bucket, hot

    # -- writes ---------------------------------------------------------------------------
    def write(self, code: np.ndarray, ts: np.ndarray, price: np.ndarray, volume: np.ndarray) -> None:
        """Fold ticks into the candles of every interval. The ticks come grouped by symbol (each
        symbol's ticks contiguous), each symbol's in arrival order."""
        n = len(ts)
        # (interval, tick) -> bucket and slot, flattened interval-major: each interval's block keeps
        # the symbols grouped, so (slot, bucket) groups are contiguous where trade time rises
        bucket = (np.floor((ts - ORIGINS[:, None]) / SECONDS[:, None]) * SECONDS[:, None] + ORIGINS[:, None]).ravel()
        slot = (code * NI + np.arange(NI)[:, None]).ravel()
        same = slot[1:] == slot[:-1]
        if np.any(same & (bucket[1:] < bucket[:-1])):  # trade time steps back within a symbol
            order = np.argsort(key_of(slot, bucket), kind="stable")  # stable: arrival order per candle
            slot, bucket = slot.take(order), bucket.take(order)
            pick = order % n
            ts, price, volume = ts.take(pick), price.take(pick), volume.take(pick)
            same = slot[1:] == slot[:-1]
        else:
            ts, price, volume = np.tile(ts, NI), np.tile(price, NI), np.tile(volume, NI)
        starts = np.flatnonzero(np.concatenate(([True], ~same | (bucket[1:] != bucket[:-1]))))
        g_slot, g_bucket = slot.take(starts), bucket.take(starts)
        top = self.hot_bucket.take(g_slot)
        on_top = np.flatnonzero(g_bucket == top)
        late = np.flatnonzero(g_bucket < top)
        newer = np.flatnonzero(g_bucket > top)
        init = self.hot.take(g_slot)  # a starting candle where it is the newest (ignored elsewhere)
        has = g_bucket == top
        where, pos = self.runs.find(key_of(g_slot.take(late), g_bucket.take(late)))
        found = np.unique(where[where >= 0]).tolist()
        for r in found:
            at = where == r
            init.put(late[at], BarColumns(vals=self.runs.runs[r].rows).take(pos[at]))
            has[late[at]] = True
        folded = fold(starts, price, ts, volume, init, has, finals_only=True).final
        # write back: the newest candles in place, closed ones found in the runs in place
        if len(on_top) == len(starts):
            self.hot.put(g_slot, folded)
        else:
            self.hot.put(g_slot.take(on_top), folded.take(on_top))
        for r in found:
            at = where == r
            BarColumns(vals=self.runs.runs[r].rows).put(pos[at], folded.take(late[at]))
        final = folded.vals
        closed = [late[where < 0]]  # late candles not held before: new closed candles
        keys, rows = [], []
        if len(newer):
            # per slot, its newest group becomes the slot's newest candle; the others close
            n_slot = g_slot.take(newer)
            last = np.concatenate((n_slot[1:] != n_slot[:-1], [True]))
            closed.append(newer[~last])
            rolled = newer[last]
            slots = n_slot[last]
            had = np.flatnonzero(top.take(rolled) > -INF)
            old = slots.take(had)
            keys.append(key_of(old, top.take(rolled.take(had))))
            rows.append(self.hot.vals.take(old, axis=0))
            self.hot_bucket[slots] = g_bucket.take(rolled)
            self.hot.put(slots, folded.take(rolled))
        picked = np.concatenate(closed)
        keys.append(key_of(g_slot.take(picked), g_bucket.take(picked)))
        rows.append(final.take(picked, axis=0))
        key = np.concatenate(keys)
        if len(key):
            order = np.argsort(key)
            self.runs.add(key.take(order), np.concatenate(rows).take(order, axis=0))

    # -- reads ----------------------------------------------------------------------------
    def read(self, code: int, interval: int, before: float, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``limit`` of ``code``'s candles of ``interval`` with bucket < ``before`` (and within
        retention), newest first: (buckets, rows). At most ``limit`` rows from each run."""
        return self._read(code, interval, -INF, before, limit)

    def since(self, code: int, interval: int, lo: float) -> tuple[np.ndarray, np.ndarray]:
        """All of ``code``'s candles of ``interval`` with bucket >= ``lo``, oldest first."""
        buckets, rows = self._read(code, interval, lo, INF, None)
        return buckets[::-1], rows[::-1]

    def _read(self, code: int, interval: int, lo: float, before: float, limit: int | None):
        if limit is not None and limit <= 0 or code * NI >= len(self.hot_bucket):
            return np.zeros(0), NONE
        i = INDEX[interval]
        slot = code * NI + i
        lo = max(lo, self.floor[i])
        buckets, rows = [], []
        b = self.hot_bucket[slot]
        if lo <= b < before:
            buckets.append(np.array([b]))
            rows.append(self.hot.vals[slot:slot + 1])
        for run in self.runs:
            start, end = run.span(slot, lo, before)
            if limit is not None:
                start = max(start, end - limit)
            if start < end:
                buckets.append(run.key.imag[start:end])
                rows.append(run.rows[start:end])
        if not buckets:
            return np.zeros(0), NONE
        bucket, row = np.concatenate(buckets), np.concatenate(rows)
        self.rows_read += len(bucket)
        order = np.argsort(-bucket, kind="stable")[:limit]
        return bucket[order], row[order]

    # -- retention ------------------------------------------------------------------------
    def prune(self, now: float, bar_seconds: float) -> None:
        """Move each interval's floor to ``now`` minus its retention; cut candles below the floors from
        the runs once per ``CUT_EVERY * bar_seconds``. A slot's newest candle stays in ``hot``
        (unread below the floor): it still marks where the slot's older candles end."""
        self.floor = now - np.maximum(bar_seconds, np.where(SECONDS == 60, 0, KEEP_CANDLES * SECONDS))
        if now - self.cut_at < CUT_EVERY * bar_seconds:
            return
        self.cut_at = now
        for run in self.runs:
            keep = run.key.imag >= self.floor[run.key.real.astype(np.int64) % NI]
            if not keep.all():
                run.keep(keep)
        self.runs.drop_empty()

    def count(self, interval: int | None = None) -> int:
        """Candles held within retention, of ``interval`` (None: of every interval but 1m)."""
        def mine(slots: np.ndarray) -> np.ndarray:
            i = slots % NI
            return i == INDEX[60] if interval == 60 else (i != INDEX[60] if interval is None else i == INDEX[interval])
        slots = np.arange(len(self.hot_bucket))
        held = (self.hot_bucket > -INF) & (self.hot_bucket >= self.floor[slots % NI])
        n = int(np.count_nonzero(mine(slots) & held))
        for run in self.runs:
            s = run.key.real.astype(np.int64)
            n += int(np.count_nonzero(mine(s) & (run.key.imag >= self.floor[s % NI])))
        return n
