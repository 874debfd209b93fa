"""The batch candle kernel equals the per-tick rule (``Bar(...)`` then ``Bar.add``) bit for bit."""

from __future__ import annotations

import math
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from candlewick.domain import SMA_N, BarColumns, fold, sma10
from candlewick.schema import Bar

T0 = 1_730_425_200.0

prices = st.one_of(st.sampled_from([1.0, 2.5, 3.0, 100.0, 0.1]),
                   st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False))
volumes = st.one_of(st.sampled_from([0.0, -0.0, 1.0, 0.3, 1e-9]),
                    st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False))
times = st.one_of(st.sampled_from([T0, T0 + 1.5, T0 + 30.0, T0 + 59.999]),  # ties are common
                  st.floats(min_value=T0, max_value=T0 + 59.999, allow_nan=False))
ticks = st.tuples(prices, times, volumes)
groups = st.lists(st.tuples(st.lists(ticks, max_size=6), st.lists(ticks, min_size=1, max_size=40)),
                  min_size=1, max_size=12)
"""Each group: the ticks its starting bar was made of (none: the group's first tick opens it), then
the ticks to fold."""


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def reference(before: list, after: list) -> tuple[Bar | None, list[tuple], Bar]:
    bar = None
    for p, t, v in before:
        if bar is None:
            bar = Bar(0, p, t, v)
        else:
            bar.add(p, t, v)
    start = bar.copy() if bar is not None else None
    states = []
    for p, t, v in after:
        if bar is None:
            bar = Bar(0, p, t, v)
        else:
            bar.add(p, t, v)
        states.append((bar.open, bar.high, bar.low, bar.close, bar.volume))
    return start, states, bar


@settings(max_examples=200, deadline=None)
@given(groups)
def test_fold_equals_bar_add(spec):
    """Every bar after every tick, and every final bar, equal ``Bar.add``'s bit for bit: open by
    earliest trade time (first applied on a tie), close by latest (last applied on a tie), and the
    sums added in arrival order."""
    starts, p, t, v, init_bars, has_init, expected, finals = [], [], [], [], [], [], [], []
    for before, after in spec:
        start, states, final = reference(before, after)
        starts.append(len(p))
        for tick in after:
            p.append(tick[0])
            t.append(tick[1])
            v.append(tick[2])
        has_init.append(start is not None)
        init_bars.append(start if start is not None else Bar(0, 0.0, 0.0, 0.0))
        expected += states
        finals.append(final)
    out = fold(np.array(starts), np.array(p), np.array(t), np.array(v), BarColumns.of(init_bars), np.array(has_init))
    got = [tuple(map(bits, s)) for s in out.after.tolist()]
    assert got == [tuple(map(bits, s)) for s in expected]
    for k, bar in enumerate(finals):
        for name in ("open", "open_ts", "high", "low", "close", "close_ts", "volume", "pv", "psum"):
            assert bits(getattr(out.final, name)[k]) == bits(getattr(bar, name)), (k, name)
        assert int(out.final.count[k]) == bar.count


def test_sums_are_sequential_not_pairwise():
    """A long group whose sum depends on the order of addition: the kernel adds in arrival order."""
    vols = [1e16, 1.0, -0.0, 1.0] * 64 + [3.0] * 70
    starts = np.array([0])
    p = np.full(len(vols), 1.0)
    t = np.full(len(vols), T0)
    out = fold(starts, p, t, np.array(vols), BarColumns(1), np.array([False]))
    bar = Bar(0, 1.0, T0, vols[0])
    for x in vols[1:]:
        bar.add(1.0, T0, x)
    assert bits(out.final.volume[0]) == bits(bar.volume)
    assert out.final.volume[0] != math.fsum(vols)  # the order matters for these volumes


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(prices, min_size=SMA_N, max_size=SMA_N), min_size=1, max_size=20))
def test_sma10_adds_left_to_right(rows):
    """SMA10 is ``sum`` of the 10 closes, oldest first, over 10."""
    got = sma10(np.array(rows))
    assert [bits(x) for x in got.tolist()] == [bits(sum(r) / SMA_N) for r in rows]
