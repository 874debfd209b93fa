"""Crash injection for tests: the book table raises for chosen symbols, as a bug in one actor's work would.

A pass applies many actors' work in one ``BookTable.apply``; when it raises, the dispatcher runs the
pass again row by row (``apply_isolated``) to find whose work it was. A doomed symbol therefore
raises twice per crash: in the pass that holds it, then alone. Its count goes down once per crash.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from candlewick.domain import BookTable


def faulty_apply(doomed: Counter, crashes: dict[str, list[float]] | None = None,
                 clock: Callable[[], float] = lambda: 0.0):
    """A replacement for ``BookTable.apply`` that raises for symbols with ``doomed[symbol] > 0``."""
    real = BookTable.apply
    armed: set[str] = set()

    def apply(self, rows, *cols):
        names = {self.symbols[r] for r in np.unique(np.asarray(rows)).tolist()}
        hit = sorted(s for s in names if doomed[s] > 0)
        if hit:
            symbol = hit[0]
            if len(names) == 1 and symbol in armed:  # the run of its row alone: the crash is counted
                armed.discard(symbol)
                doomed[symbol] -= 1
                if crashes is not None:
                    crashes.setdefault(symbol, []).append(clock())
            else:
                armed.update(hit)
            raise RuntimeError(f"injected fault in {symbol}")
        return real(self, rows, *cols)

    return apply


def row_state(table: BookTable, symbol: str) -> tuple:
    """Everything a row's book carries between applies: bars (all fields), keys remembered, horizon."""
    row = table.row(symbol)
    return ([(b.bucket, b) for b in table.bars(row)], table.keys(row), table.max_ts(row), table.floor(row))
