"""The candle rule's arithmetic that is not a book: minutes, interval buckets, SMA10 over closed bars, rollups."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from functools import partial, reduce
from operator import add

import numpy as np

from candlewick.schema import Bar, Tick

BUCKET = 60
"""Seconds in a candle of the book (1 minute)."""
SMA_N = 10
"""Closes in the simple moving average (SMA10)."""

seqsum = sum if sys.version_info < (3, 12) else partial(reduce, add)
"""``seqsum(floats, start)``: left-to-right float addition, the order ``Bar.add`` adds in, so
columnar sums equal per-tick sums exactly. ``sum`` does exactly that before 3.12; from 3.12 it
compensates rounding (a different result in the last bit), so there it is ``reduce(add, ...)``."""


def bucket_of(ts: float) -> int:
    """The minute a trade time falls in: floor(ts / 60) * 60, computed as IEEE division then
    floor, bit for bit what Postgres computes for ``floor(ts / 60)`` (``ts // 60`` can differ
    within a nanosecond of a boundary). Hot loops inline ``int(ts / BUCKET) * BUCKET``, the
    same value for the non-negative trade times validation admits."""
    return math.floor(ts / BUCKET) * BUCKET


def with_sma(bars: Sequence[Bar], context: int) -> list[tuple[Bar, float | None]]:
    """Pair each bar after the first ``context`` bars with its SMA10 (oldest-first input).

    ``context`` bars are the ones before the page; the caller fetched up to 9 of them, or
    all that exist. An SMA needs 10 closes, else it is None. The closes are added left to right
    (``seqsum``), as the book table adds them for the live events' SMA10.
    """
    closes = [b.close for b in bars]
    out = []
    for i in range(context, len(bars)):
        sma = seqsum(closes[i - SMA_N + 1:i + 1], 0) / SMA_N if i >= SMA_N - 1 else None
        out.append((bars[i], sma))
    return out


INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14_400, "1d": 86_400, "1w": 604_800}
"""The candle intervals, by their API name, in seconds."""
WEEK = 604_800
WEEK_ORIGIN = 345_600
"""1w buckets start on Monday 00:00 UTC: the epoch was a Thursday, so the first Monday is 4 days on.
Every other interval is aligned to the epoch (a day starts at 00:00 UTC)."""


def interval_origin(interval: int) -> int:
    """Where the buckets of ``interval`` seconds are aligned: ``WEEK_ORIGIN`` for weeks, else the epoch."""
    return WEEK_ORIGIN if interval == WEEK else 0


def interval_bucket(ts: float, interval: int) -> int:
    """The start of the ``interval``-second candle a trade time falls in:
    floor((ts - origin) / interval) * interval + origin, as IEEE division then floor (``bucket_of``
    for 60 s). The one definition the stores, the SQL and the HTTP layer agree on."""
    origin = WEEK_ORIGIN if interval == WEEK else 0
    return math.floor((ts - origin) / interval) * interval + origin


def interval_buckets(ts: np.ndarray, interval: int) -> np.ndarray:
    """``interval_bucket`` of each trade time (float64 array in, float64 buckets out, exact integers)."""
    origin = WEEK_ORIGIN if interval == WEEK else 0
    if origin:
        return np.floor((ts - float(origin)) / interval) * interval + origin
    return np.floor(ts / interval) * interval


def rollup(bars_oldest_first: Iterable[Bar], interval: int) -> list[Bar]:
    """Merge 1m bars into bars of ``interval`` seconds (buckets as ``interval_bucket`` aligns them)."""
    out: list[Bar] = []
    for bar in bars_oldest_first:
        bucket = interval_bucket(bar.bucket, interval)
        if out and out[-1].bucket == bucket:
            out[-1].merge(bar)
        else:
            out.append(bar.copy(bucket))
    return out


def group_by_symbol(ticks: Iterable[Tick]) -> dict[str, list[Tick]]:
    """A request's ticks per symbol, each list in arrival order."""
    groups: dict[str, list[Tick]] = {}
    for tick in ticks:
        lst = groups.get(tick.symbol)
        if lst is None:
            groups[tick.symbol] = [tick]
        else:
            lst.append(tick)
    return groups
