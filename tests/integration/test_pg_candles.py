"""PostgresStore.candles: bars of every interval, newest first, equal to a rollup of the 1m bars."""

from __future__ import annotations

import math
import random

import pytest

from candlewick.schema import Bar, Tick
from candlewick.storage.postgres import INTERVAL_OFFSETS
from tests.unit.test_store_contract import T0, ticks_over_weeks

WEEK_OFFSET = 345_600


def align(bucket: int, interval: int) -> int:
    """The brief's alignment: epoch-aligned, except 1w which starts on Monday 00:00 UTC."""
    offset = WEEK_OFFSET if interval == 604_800 else 0
    return math.floor((bucket - offset) / interval) * interval + offset


def reference(bars_desc: list[Bar], interval: int, before: float, limit: int) -> list[Bar]:
    """Roll the 1m bars (newest first) up into ``interval`` bars in Python, oldest minute first."""
    out: dict[int, Bar] = {}
    for bar in reversed(bars_desc):
        b = align(bar.bucket, interval)
        if b in out:
            out[b].merge(bar)
        else:
            out[b] = bar.copy(b)
    return [out[b] for b in sorted(out, reverse=True) if b < before][:limit]


async def test_candles_of_every_interval_equal_a_rollup_of_the_1m_bars(store):
    """For each interval, bars newest first with bucket < before, at most limit, every field equal to
    the Python rollup of the stored 1m bars; written in batches out of time order (late ticks)."""
    rng = random.Random(7)
    ticks = ticks_over_weeks(rng, 3_000)
    for i in range(0, len(ticks), 250):
        await store.write({"S": ticks[i:i + 250]})
    minutes = await store.bars_before("S", math.inf, 100_000)
    assert sum(b.count for b in minutes) == len(ticks)
    last = max(t.ts for t in ticks)
    for interval in INTERVAL_OFFSETS:
        befores = [math.inf, last, align(int(last), interval), T0 + 5 * 86_400 + 1, T0 + 9 * 86_400 + 0.5, T0]
        for before in befores:
            for limit in (1, 3, 5_000):
                got = await store.candles("S", interval, before, limit)
                want = reference(minutes, interval, before, limit)
                assert got == want, (interval, before, limit)
    weeks = await store.candles("S", 604_800, math.inf, 10)
    assert [b.bucket for b in weeks] == [1_731_888_000, 1_731_283_200, 1_730_678_400, 1_730_073_600]
    assert all(time_is_monday(b.bucket) for b in weeks)


def time_is_monday(bucket: int) -> bool:
    import datetime

    when = datetime.datetime.fromtimestamp(bucket, datetime.UTC)
    return when.weekday() == 0 and (when.hour, when.minute, when.second) == (0, 0, 0)


async def test_candles_skip_holes_and_stop_at_the_oldest(store):
    """Buckets without trades are not bars: ``limit`` bars are found across a gap of months, and
    fewer only when no older trade exists; an unknown symbol has none."""
    ticks = [Tick(f"a{i}", "S", 10.0 + i, T0 + i * 86_400 * 40, 1.0) for i in range(5)]  # one every 40 days
    await store.write({"S": ticks})
    got = await store.candles("S", 3_600, math.inf, 4)
    assert [b.bucket for b in got] == [align(int(t.ts), 3_600) for t in reversed(ticks)][:4]
    assert [b.close for b in got] == [14.0, 13.0, 12.0, 11.0]
    assert len(await store.candles("S", 60, math.inf, 100)) == 5
    assert await store.candles("S", 60, T0, 100) == []
    assert await store.candles("nope", 86_400, math.inf, 10) == []


async def test_candles_refuse_an_interval_they_do_not_keep(store):
    with pytest.raises(ValueError):
        await store.candles("S", 120, math.inf, 10)
