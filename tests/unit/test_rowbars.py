"""RowBars keeps many rows' bars in one set of columns: an hour of minutes coming and going stays compact."""

from __future__ import annotations

import numpy as np

from candlewick.domain._kernel import BarColumns
from candlewick.domain._rowbars import RowBars


def _minute(bars: RowBars, rows: np.ndarray, minute: int) -> None:
    """One new bar (at ``minute``) for each of ``rows``, as a book adds them."""
    counts = np.ones(len(rows), dtype=np.int64)
    bars.reserve(rows, counts)
    values = BarColumns(len(rows))
    values.vals[:, 0] = minute
    bars.write(rows, counts, np.full(len(rows), minute, dtype=np.int64), values, np.ones(len(rows), dtype=np.int32))


def test_rows_keep_their_bars_in_order_while_old_ones_are_cut():
    """Every row outgrows its segment at the same minute (symbols that trade every minute): the
    room reserved must cover all their new segments at once."""
    bars = RowBars()
    bars.add_rows(50)
    rows = np.arange(50)
    keep = 70
    for minute in range(300):
        _minute(bars, rows, minute)
        over = np.maximum(bars.n[rows] - keep, 0)
        bars.first[rows] = np.maximum(bars.first[rows], over)  # the floor passed them
        bars.cut(rows[over > 0], over[over > 0])
    for row in rows.tolist():
        got = bars.minute[bars.base[row]:bars.base[row] + bars.n[row]]
        assert got.tolist() == list(range(300 - keep, 300))
        assert bars.bars.vals[bars.base[row]:bars.base[row] + bars.n[row], 0].tolist() == got.tolist()


def test_an_hour_of_bars_takes_under_two_slots_a_bar():
    """2,000 symbols each adding a bar a minute and keeping 70 (an hour's lateness and the 9
    before it): the columns hold at most 1.75 slots a live bar, whenever they are looked at."""
    bars = RowBars()
    n_rows, keep = 2_000, 70
    bars.add_rows(n_rows)
    rows = np.arange(n_rows)
    worst = 0.0
    for minute in range(180):
        _minute(bars, rows, minute)
        over = np.maximum(bars.n[rows] - keep, 0)
        bars.first[rows] = np.maximum(bars.first[rows], over)
        bars.cut(rows[over > 0], over[over > 0])
        if minute >= 20:
            worst = max(worst, len(bars.minute) / int(bars.n.sum()))
    assert worst <= 1.75, worst
