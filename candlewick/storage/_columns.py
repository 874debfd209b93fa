"""Every symbol's raw ticks as columns in sorted runs, and the reads and retention they serve.

A tick is one row of a run (``_mem_runs``): its key is (symbol code, trade time) and its row holds
the arrival sequence number, price, volume and the two halves of its key's 128-bit digest: 56
bytes, no object per tick. Equal keys keep their arrival order, so a symbol's rows in a run are in
(trade time, seq) order, the order pages walk. Runs hold disjoint, increasing ranges of seq (a run
is made from one write, and only neighbours merge), which makes the count bound cheap: the oldest
writes are evicted by raising ``cut`` (the lowest live seq); rows below it are cut from their run
once they are the larger part of it. Keys that are not 16-byte digests (tests build ticks with any
key) are kept aside by seq, in ``other_keys``. See docs/ARCHITECTURE.md, "Storage" (memory store).
"""

from __future__ import annotations

import numpy as np

from candlewick.storage._mem_runs import Run, Runs, key_of

RAW = np.dtype([("seq", "<i8"), ("price", "<f8"), ("volume", "<f8"), ("hi", "<u8"), ("lo", "<u8")])
"""One raw tick's row (its key, (symbol code, trade time), is the run's)."""
RAW_RUN_CAP = 1 << 19
"""The longest run merges make (28 MB of rows): a merge never holds more than that twice."""
INF = float("inf")


class RawTicks:
    """Raw ticks of every symbol: sorted runs, a count bound by arrival and a retention by age."""

    __slots__ = ("runs", "cut", "live", "other_keys", "rows_read")

    def __init__(self) -> None:
        self.runs = Runs(RAW_RUN_CAP)
        self.cut = 0
        """Rows with seq < cut are evicted (the count bound), whether or not cut from their run yet."""
        self.live = 0
        """Rows held and not evicted: the store's raw tick count."""
        self.other_keys: dict[int, object] = {}
        """seq -> key, for ticks whose key is not a 16-byte digest; in seq order."""
        self.rows_read = 0
        """Rows the reads have gathered, all told (a statistic: reads must stay bounded)."""

    def add(self, code: np.ndarray, ts: np.ndarray, rows: np.ndarray) -> None:
        """Add one write's ticks (arrival order; ``rows`` of dtype ``RAW`` with increasing seq)."""
        key = key_of(code, ts)
        order = np.argsort(key, kind="stable")  # ties keep arrival order
        self.runs.add(key.take(order), rows.take(order), int(rows["seq"][0]) if len(rows) else 0)
        self.live += len(key)

    # -- retention ------------------------------------------------------------------------
    def evict(self, k: int) -> None:
        """Forget the ``k`` ticks written first (of those not forgotten yet)."""
        runs = self.runs.runs
        while k > 0 and runs:
            run = runs[0]
            seqs = _sorted_seqs(run)
            dead = int(seqs.searchsorted(self.cut))
            live = len(seqs) - dead
            if live <= k:
                self._release(seqs[dead:])
                k -= live
                self.live -= live
                self.cut = max(self.cut, int(seqs[-1]) + 1)
                del runs[0]
                continue
            self._release(seqs[dead:dead + k])
            self.live -= k
            self.cut = int(seqs[dead + k])
            if (dead + k) * 2 > len(seqs):  # the forgotten rows are the larger part: cut them
                run.keep(run.rows["seq"] >= self.cut)
                run.cache, run.low = seqs[dead + k:], self.cut
            k = 0

    def prune(self, floor: float) -> None:
        """Forget the ticks with trade time < ``floor`` (and cut evicted rows from the runs it touches)."""
        for run in self.runs:
            ts = run.key.imag
            if not len(ts) or ts.min() >= floor:
                continue
            seq = run.rows["seq"]
            live = seq >= self.cut
            old = ts < floor
            gone = old & live
            self.live -= int(np.count_nonzero(gone))
            if self.other_keys:
                self._release(seq[gone])
            run.keep(live & ~old)
            run.low = max(run.low, self.cut)
        self.runs.drop_empty()

    def _release(self, seqs: np.ndarray) -> None:
        other = self.other_keys
        if other:
            for s in seqs.tolist():
                other.pop(s, None)

    # -- reads ----------------------------------------------------------------------------
    def before(self, code: int, ts: float | None, seq: int, limit: int) -> tuple[np.ndarray, bool]:
        """Up to ``limit`` of ``code``'s live ticks before (ts, seq) (all, if ``ts`` is None), newest
        first, as ``RAW`` rows with their trade times in a field ``ts``; and whether older ones exist.
        Each run gives at most limit + 1 rows (the newest before the cursor), so a page gathers
        O(limit) rows per run."""
        want = limit + 1
        parts = []
        for run in self.runs:
            lo, end = run.span(code, -INF, INF)
            if lo == end:
                continue
            if ts is not None:
                at = complex(code, ts)
                b, e = int(run.key.searchsorted(at)), int(run.key.searchsorted(at, "right"))
                end = b + int(run.rows["seq"][b:e].searchsorted(seq))  # ties are in seq order
            parts.append(self._newest(run, lo, end, want))
        rows = _joined(parts)
        order = np.lexsort((rows["seq"], rows["ts"]))[::-1]
        self.rows_read += len(rows)
        return rows.take(order[:limit]), len(rows) > limit

    def _newest(self, run: Run, lo: int, end: int, want: int) -> np.ndarray:
        """The newest ``want`` live rows of run[lo:end] (fewer if there are not that many)."""
        start = max(lo, end - want)
        rows = _with_ts(run, start, end)
        if not _may_hold_dead(run, self.cut):
            return rows
        rows = rows[rows["seq"] >= self.cut]
        while len(rows) < want and start > lo:  # evicted rows in the way: look further back
            step = max(want, end - start)
            start, end = max(lo, start - step), start
            more = _with_ts(run, start, end)
            rows = np.concatenate([more[more["seq"] >= self.cut], rows])
        return rows[-want:]

    def between(self, code: int, since: float, until: float) -> np.ndarray:
        """``code``'s live ticks with since <= ts < until in (ts, seq) order, as rows with ``ts``."""
        parts = []
        for run in self.runs:
            lo, hi = run.span(code, since, until)
            if lo < hi:
                rows = _with_ts(run, lo, hi)
                parts.append(rows[rows["seq"] >= self.cut] if _may_hold_dead(run, self.cut) else rows)
        rows = _joined(parts)
        self.rows_read += len(rows)
        return rows.take(np.lexsort((rows["seq"], rows["ts"])))

    def held(self) -> int:
        """Rows held in the runs, evicted ones not yet cut included."""
        return self.runs.rows()


RAW_TS = np.dtype(RAW.descr + [("ts", "<f8")])


def _with_ts(run: Run, lo: int, hi: int) -> np.ndarray:
    out = np.empty(hi - lo, dtype=RAW_TS)
    part = run.rows[lo:hi]
    for name in RAW.names:
        out[name] = part[name]
    out["ts"] = run.key.imag[lo:hi]
    return out


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype=RAW_TS)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _sorted_seqs(run: Run) -> np.ndarray:
    """The run's seqs, ascending (kept until the run changes)."""
    if run.cache is None:
        run.cache = np.sort(run.rows["seq"])
    return run.cache  # type: ignore[return-value]


def _may_hold_dead(run: Run, cut: int) -> bool:
    """Whether some of the run's rows may be evicted (seq < cut): only the oldest runs can hold any."""
    return run.low < cut
