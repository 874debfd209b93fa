"""A lane's books: the state of all its actors behind one ``apply`` over a pass's columns.

``Outcome`` is what one pass's apply produced, as columns. A fault inside one row's work is that
row's crash (``Outcome.crashed``); every other row's work stands. See docs/ARCHITECTURE.md, "Actors
as rows".
"""

from __future__ import annotations

import numpy as np

from candlewick.domain import SymbolBook
from candlewick.schema import Tick, digest_bytes
from candlewick.storage import BookSeed

NEW, DUPLICATE, SKIPPED, CRASHED = 0, 1, 2, 3
"""What became of each tick of a pass (CRASHED: its row's work raised; nothing of it was applied)."""


class Outcome:
    """One pass's apply, as columns: a status per input tick; for the new ticks (``new``, their
    input positions, ascending), the bar just after each and its SMA10 (NaN without 10 bars); and
    the rows whose work raised, with the exception (nothing of theirs was applied)."""

    __slots__ = ("status", "new", "bucket", "open", "high", "low", "close", "volume", "sma", "crashed")

    def __init__(self, n: int) -> None:
        self.status = np.zeros(n, dtype=np.int8)
        self.new = np.zeros(0, dtype=np.intp)
        self.bucket = np.zeros(0, dtype=np.int64)
        self.open = self.high = self.low = self.close = self.volume = self.sma = np.zeros(0)
        self.crashed: dict[int, Exception] = {}

    def keep(self, mask: np.ndarray) -> Outcome:
        """The new ticks' columns where ``mask`` holds (statuses are not carried)."""
        out = Outcome(0)
        out.new = self.new[mask]
        out.bucket, out.open, out.high, out.low = self.bucket[mask], self.open[mask], self.high[mask], self.low[mask]
        out.close, out.volume, out.sma = self.close[mask], self.volume[mask], self.sma[mask]
        return out


class SymbolBooks:
    """One ``SymbolBook`` per row, applied row by row (each row's ticks in arrival order)."""

    def __init__(self, lateness: float, max_keys: int) -> None:
        self.lateness = lateness
        self.max_keys = max_keys
        self.books: list[SymbolBook | None] = []
        self.symbols: list[str] = []

    def add(self, symbol: str) -> int:
        self.books.append(None)
        self.symbols.append(symbol)
        return len(self.books) - 1

    def seed(self, row: int, seed: BookSeed) -> None:
        """(Re)build a row's state from the store."""
        self.books[row] = SymbolBook(self.symbols[row], lateness=self.lateness, max_keys=self.max_keys,
                                     bars=seed.bars, keys=seed.keys, max_ts=seed.max_ts)

    def apply(self, rows: np.ndarray, price: np.ndarray, ts: np.ndarray, volume: np.ndarray,
              digest: np.ndarray) -> Outcome:
        n = len(rows)
        out = Outcome(n)
        if not n:
            return out
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        cuts = np.flatnonzero(np.diff(sorted_rows)) + 1
        starts = np.concatenate(([0], cuts)).tolist()
        ends = np.concatenate((cuts, [n])).tolist()
        raw = digest_bytes(digest)
        prices, tss, volumes, positions = price.tolist(), ts.tolist(), volume.tolist(), order.tolist()
        status = out.status
        new_at: list[int] = []
        events: list = []
        for a, b in zip(starts, ends, strict=True):
            row = int(sorted_rows[a])
            symbol = self.symbols[row]
            at = positions[a:b]
            ticks = [Tick(raw[i * 16:i * 16 + 16], symbol, prices[i], tss[i], volumes[i]) for i in at]
            try:
                applied = self.books[row].apply(ticks)  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - this row's crash; the others' work stands
                out.crashed[row] = exc
                status[at] = CRASHED
                continue
            rejected = set()
            for k in applied.duplicate_at or ():
                status[at[k]] = DUPLICATE
                rejected.add(k)
            for k in applied.skipped_at or ():
                status[at[k]] = SKIPPED
                rejected.add(k)
            new_at += (at[k] for k in range(len(at)) if k not in rejected)
            events += applied.events
        if new_at:
            order_new = np.argsort(np.asarray(new_at, dtype=np.intp), kind="stable")
            out.new = np.asarray(new_at, dtype=np.intp)[order_new]
            cols = np.array([(e.bucket, e.open, e.high, e.low, e.close, e.volume,
                              np.nan if e.sma10 is None else e.sma10) for e in events], dtype=np.float64)[order_new]
            out.bucket = cols[:, 0].astype(np.int64)
            out.open, out.high, out.low, out.close, out.volume, out.sma = (np.ascontiguousarray(cols[:, j])
                                                                           for j in range(1, 7))
        return out
