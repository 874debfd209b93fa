"""The candle rule over one write's ticks for many bars at once: each bar's ticks folded onto it in arrival order.

Bit for bit what ``Bar.add`` of each tick in arrival order gives (``tests/unit/test_mem_store.py``
checks it on shuffled, tied and late batches). Float addition is not associative, so the sums
(volume, price * volume, price) cannot be numpy reductions (pairwise); and numpy's ``reduceat``
costs more per group than a tick does. So the fold applies ticks a rank at a time across all bars:
step k applies the k-th tick of every bar that has more than k, as a few vector operations (the
sums added, high and low compared, open taken where the tick is strictly earlier, close where it is
not earlier: ``Bar.add``'s tests). The few bars much longer than the rest are finished one by one
(``np.cumsum`` adds left to right; ``argmin`` finds the first earliest). No Python loop runs per tick.
"""

from __future__ import annotations

import numpy as np

OPEN, OPEN_TS, HIGH, LOW, CLOSE, CLOSE_TS, COUNT, VOLUME, PV, PSUM = range(10)
FIELDS = 10
"""A bar as 10 float64 (``count`` is exact as a float up to 2^53); the sums are the last three."""
STEP, FINISH = 1.0, 2.5
"""What applying one rank across the bars and finishing one bar on its own cost, roughly (about 10
numpy calls against about 25)."""


def fold(price: np.ndarray, ts: np.ndarray, volume: np.ndarray, starts: np.ndarray, init: np.ndarray,
         has: np.ndarray) -> np.ndarray:
    """Each group's bar after its ticks, as (groups, FIELDS) rows.

    The ticks are grouped (group g is ticks[starts[g]:starts[g + 1]], in arrival order); ``init``
    (groups, FIELDS) holds each group's stored bar where ``has`` is true; elsewhere the group's
    first tick opens a new bar, as ``Bar(bucket, price, ts, volume)`` does.
    """
    n = len(ts)
    counts = np.diff(np.append(starts, n))
    pv = price * volume
    fp, ft, fv, fpv = price.take(starts), ts.take(starts), volume.take(starts), pv.take(starts)
    i = np.ascontiguousarray(init.T)
    s = np.empty((FIELDS, len(starts)))
    # a stored bar, then its first tick (Bar.add); or a new bar of its first tick (Bar(...))
    s[OPEN] = np.where(has & (ft >= i[OPEN_TS]), i[OPEN], fp)
    s[OPEN_TS] = np.where(has & (ft >= i[OPEN_TS]), i[OPEN_TS], ft)
    s[CLOSE] = np.where(has & (ft < i[CLOSE_TS]), i[CLOSE], fp)
    s[CLOSE_TS] = np.where(has & (ft < i[CLOSE_TS]), i[CLOSE_TS], ft)
    s[HIGH] = np.where(has, np.maximum(i[HIGH], fp), fp)
    s[LOW] = np.where(has, np.minimum(i[LOW], fp), fp)
    s[COUNT] = np.where(has, i[COUNT] + counts, counts)
    s[VOLUME] = np.where(has, i[VOLUME] + fv, fv)
    s[PV] = np.where(has, i[PV] + fpv, fpv)
    s[PSUM] = np.where(has, i[PSUM] + fp, fp)
    if len(counts) and counts.max() > 1:
        _rest((volume, pv, price, ts), starts, counts, s)
    return np.ascontiguousarray(s.T)


def _rest(x: tuple[np.ndarray, ...], starts: np.ndarray, counts: np.ndarray, s: np.ndarray) -> None:
    """Apply each group's ticks after its first to ``s`` (FIELDS, groups), in order. ``x``: the
    ticks' volume, price * volume, price and trade time."""
    volume, pv, price, ts = x
    perm = np.argsort(-counts, kind="stable")  # longest first: the bars still open are a prefix
    cs, st = counts.take(perm), starts.take(perm)
    p = np.empty_like(s)
    for f in range(FIELDS):
        s[f].take(perm, out=p[f])
    desc = -cs
    longest = int(cs[0])
    # step ranks 1 .. stop - 1 across the bars, then finish the bars longer than `stop` one by one,
    # at the `stop` that costs least
    stops = np.arange(1, longest + 1)
    stop = int(stops[np.argmin((stops - 1) * STEP + desc.searchsorted(-stops) * FINISH)])
    for k in range(1, stop):
        m = int(desc.searchsorted(-k))  # bars with more than k ticks
        at = st[:m] + k
        gp, gt = price.take(at), ts.take(at)
        p[VOLUME, :m] += volume.take(at)
        p[PV, :m] += pv.take(at)
        p[PSUM, :m] += gp
        np.maximum(p[HIGH, :m], gp, out=p[HIGH, :m])
        np.minimum(p[LOW, :m], gp, out=p[LOW, :m])
        earlier = gt < p[OPEN_TS, :m]
        np.copyto(p[OPEN, :m], gp, where=earlier)
        np.copyto(p[OPEN_TS, :m], gt, where=earlier)
        later = gt >= p[CLOSE_TS, :m]
        np.copyto(p[CLOSE, :m], gp, where=later)
        np.copyto(p[CLOSE_TS, :m], gt, where=later)
    for j in range(int(desc.searchsorted(-stop))):
        a, b = st[j] + stop, st[j] + cs[j]
        _finish(volume[a:b], pv[a:b], price[a:b], ts[a:b], p[:, j])
    for f in range(FIELDS):
        s[f, perm] = p[f]


def _finish(volume: np.ndarray, pv: np.ndarray, price: np.ndarray, ts: np.ndarray, bar: np.ndarray) -> None:
    """Apply some ticks to one bar (a column of FIELDS), in order."""
    run = np.empty((3, len(ts) + 1))
    run[:, 0] = bar[VOLUME:]
    run[0, 1:], run[1, 1:], run[2, 1:] = volume, pv, price
    bar[VOLUME:] = np.cumsum(run, axis=1)[:, -1]  # left to right, as += one at a time
    bar[HIGH] = max(bar[HIGH], price.max())
    bar[LOW] = min(bar[LOW], price.min())
    i = int(ts.argmin())  # the first of the earliest
    if ts[i] < bar[OPEN_TS]:
        bar[OPEN], bar[OPEN_TS] = price[i], ts[i]
    j = len(ts) - 1 - int(ts[::-1].argmax())  # the last of the latest
    if ts[j] >= bar[CLOSE_TS]:
        bar[CLOSE], bar[CLOSE_TS] = price[j], ts[j]
