"""Sorted runs: how the memory store indexes rows by (id, time) without an object per row.

A ``Run`` is a block of rows sorted by a complex128 key whose real part is a small integer id (a
symbol's code, or a symbol-and-interval slot) and whose imaginary part is a time (a trade time, or
a candle's start). numpy orders complex numbers lexicographically (real, then imaginary), so one
``searchsorted`` finds where an id's rows begin, where a time falls among them, or whether a key is
there. Each write adds one small run; ``Runs.add`` merges the newest runs in tiers of ``FAN`` (a
stable sort of runs that are already sorted, which numpy's timsort does as a merge), so a row is
copied about log_FAN(cap / write size) times, never more than ``cap`` rows are merged at once, and
a read probes a few dozen runs at most. See docs/ARCHITECTURE.md, "Storage" (memory store).
"""

from __future__ import annotations

import numpy as np

FAN = 8
"""Runs of one tier merged at once."""


def key_of(ids: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The complex128 keys ``ids + 1j * times``, built without complex multiplication (which
    would turn an infinite time into NaN)."""
    key = np.empty(len(times), dtype=np.complex128)
    key.real = ids
    key.imag = times
    return key


class Run:
    """Rows sorted by ``key``. ``rows`` is any array whose first axis runs along ``key``."""

    __slots__ = ("key", "rows", "tier", "low", "cache")

    def __init__(self, key: np.ndarray, rows: np.ndarray, tier: int = 0, low: int = 0) -> None:
        self.key = key
        self.rows = rows
        self.tier = tier
        self.low = low
        """A lower bound the owner keeps of something about the rows (the raw ticks: their seq)."""
        self.cache: object = None
        """Whatever the owner derives from the rows and wants to keep until they change."""

    def __len__(self) -> int:
        return len(self.key)

    def span(self, ident: int, lo: float, hi: float) -> tuple[int, int]:
        """The positions of the rows of ``ident`` with lo <= time < hi."""
        key = self.key
        return (int(key.searchsorted(complex(ident, lo))), int(key.searchsorted(complex(ident, hi))))

    def keep(self, mask: np.ndarray) -> None:
        """Drop the rows where ``mask`` is false (order kept)."""
        at = np.flatnonzero(mask)
        self.key = self.key.take(at)
        self.rows = self.rows.take(at, axis=0)
        self.cache = None


class Runs:
    """A list of runs, oldest first, merged in tiers as they are added."""

    __slots__ = ("runs", "cap")

    def __init__(self, cap: int) -> None:
        self.runs: list[Run] = []
        self.cap = cap
        """No merge makes a run longer than this."""

    def __iter__(self):
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def rows(self) -> int:
        return sum(len(r) for r in self.runs)

    def add(self, key: np.ndarray, rows: np.ndarray, low: int = 0) -> None:
        """Add rows already sorted by ``key`` as the newest run."""
        if not len(key):
            return
        runs = self.runs
        runs.append(Run(key, rows, 0, low))
        while len(runs) >= FAN:
            tail = runs[-FAN:]
            tier = tail[0].tier
            if any(r.tier != tier for r in tail) or sum(len(r) for r in tail) > self.cap:
                break
            del runs[-FAN:]
            runs.append(merge(tail, tier + 1))

    def drop_empty(self) -> None:
        self.runs = [r for r in self.runs if len(r)]

    def find(self, needles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each key in ``needles``: the index of the run holding it (-1 if none) and its position there."""
        where = np.full(len(needles), -1, dtype=np.intp)
        pos = np.zeros(len(needles), dtype=np.intp)
        for i, run in enumerate(self.runs):
            at = run.key.searchsorted(needles)
            inside = at < len(run)
            hit = np.zeros(len(needles), dtype=bool)
            hit[inside] = run.key.take(at[inside]) == needles[inside]
            where[hit] = i
            pos[hit] = at[hit]
        return where, pos


def merge(runs: list[Run], tier: int) -> Run:
    """One run of the rows of ``runs`` (oldest first). Stable: rows with equal keys keep their order,
    older runs' first."""
    key = np.concatenate([r.key for r in runs])
    order = np.argsort(key, kind="stable")
    rows = np.concatenate([r.rows for r in runs]).take(order, axis=0)  # take: fancy indexing is several times slower
    return Run(key.take(order), rows, tier, min(r.low for r in runs))
