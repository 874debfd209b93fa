"""The batch candle kernel (``fold``, and its finals-only mode) equals the per-tick rule (``Bar(...)``
then ``Bar.add``) bit for bit."""

from __future__ import annotations

import math
import struct
from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from candlewick.domain import SMA_N, BarColumns, _kernel, fold, sma10
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


def shuffled_with_repeats(xs: list) -> st.SearchStrategy:
    """``xs`` with some of its ticks again (duplicates), all in any order."""
    return st.lists(st.sampled_from(xs), max_size=len(xs)).flatmap(lambda extra: st.permutations(xs + extra))


repeated_groups = st.lists(st.tuples(st.lists(ticks, max_size=6),
                                     st.lists(ticks, min_size=1, max_size=30).flatmap(shuffled_with_repeats)),
                           min_size=1, max_size=12)
"""As ``groups``, each group's ticks shuffled, some of them twice."""


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


def columns_of(spec: list) -> tuple[tuple, list[Bar]]:
    """``fold``'s arguments for ``spec`` (as ``groups``), and each group's final bar by the per-tick rule."""
    starts, p, t, v, init_bars, has_init, finals = [], [], [], [], [], [], []
    for before, after in spec:
        start, _, final = reference(before, after)
        starts.append(len(p))
        p += [tick[0] for tick in after]
        t += [tick[1] for tick in after]
        v += [tick[2] for tick in after]
        has_init.append(start is not None)
        init_bars.append(start if start is not None else Bar(0, 0.0, 0.0, 0.0))
        finals.append(final)
    args = (np.array(starts), np.array(p), np.array(t), np.array(v), BarColumns.of(init_bars), np.array(has_init))
    return args, finals


def assert_bars_exact(got: BarColumns, want: list[Bar]) -> None:
    assert len(got) == len(want)
    assert [got.bar(k, 0) for k in range(len(got))] == want  # every field, count as an int
    assert got.vals.tobytes() == BarColumns.of(want).vals.tobytes()  # -0.0 apart from 0.0


@settings(max_examples=200, deadline=None)
@given(st.one_of(groups, repeated_groups), st.one_of(st.none(), st.integers(1, 45)))
def test_finals_only_equal_bar_add(spec, stop):
    """``fold(..., finals_only=True)`` gives each group's bar after all its ticks, bit for bit ``Bar.add``'s: on tied,
    late, shuffled and repeated ticks, with or without a starting bar; whether it steps a rank at a
    time, finishes the longer groups as matrices, or mixes both at any rank (``stop``)."""
    args, finals = columns_of(spec)
    if stop is None:
        got = fold(*args, finals_only=True).final
    else:
        with mock.patch.object(_kernel, "_stop", lambda rest: min(stop, int(rest.max()) + 1)):
            got = fold(*args, finals_only=True).final
    assert_bars_exact(got, finals)
    assert got.vals.tobytes() == fold(*args).final.vals.tobytes()


def test_finals_only_finishes_long_groups_in_one_step():
    """A few groups far longer than the rest are finished together (a vector step per rank would
    cost a step per tick), and stay exact: sums in order, the first of the earliest, the last of
    the latest."""
    rng = np.random.default_rng(3)
    spec = [([], [(float(rng.choice([1.0, 2.0, 3.0])), T0 + float(rng.integers(0, 5)), float(rng.choice([0.0, -0.0, 0.1])))
                  for _ in range(size)]) for size in (3000, 1, 2, 1, 700)]
    spec[1] = ([(2.0, T0 + 2.0, -0.0)], spec[1][1])
    args, finals = columns_of(spec)
    assert _kernel._stop(np.array([2999, 1, 2, 0, 699])) < 10
    assert_bars_exact(fold(*args, finals_only=True).final, finals)


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
    finals = fold(starts, p, t, np.array(vols), BarColumns(1), np.array([False]), finals_only=True).final
    assert bits(finals.volume[0]) == bits(bar.volume)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(prices, min_size=SMA_N, max_size=SMA_N), min_size=1, max_size=20))
def test_sma10_adds_left_to_right(rows):
    """SMA10 is ``sum`` of the 10 closes, oldest first, over 10."""
    got = sma10(np.array(rows))
    assert [bits(x) for x in got.tolist()] == [bits(sum(r) / SMA_N) for r in rows]
