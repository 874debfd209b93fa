"""Time partitions and retention of the Postgres store: made ahead, dropped whole, never in the way."""

from __future__ import annotations

import math
import time

import asyncpg
import numpy as np
import trio
from trio_asyncio import aio_as_trio

from candlewick.schema import Tick
from candlewick.storage._pg_partitions import PartitionedTable
from candlewick.storage.postgres import PostgresStore
from tests.integration.test_pg_faults import assert_rollups_match_1m, sql

DAY = 86_400


async def partitions(url: str, table: str) -> list[tuple[float, float]]:
    rows = await sql(url, """SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass""", table)
    out = []
    for (bound,) in rows:
        lo, hi = bound.split("FROM ('")[1].split("') TO ('")
        out.append((float(lo), float(hi.rstrip("')"))))
    return sorted(out)


def ticks_at(tag: str, symbol: str, times: list[float]) -> list[Tick]:
    return [Tick(f"{tag}{i}", symbol, 10.0 + i, ts, 1.0) for i, ts in enumerate(times)]


def test_partition_arithmetic():
    """Slots of the width, less what partitions of another width already cover; expiry by upper bound."""
    t = PartitionedTable("x", "ts", 100)
    assert t.missing(np.array([5.0, 250.0, 260.0])) == [(0.0, 100.0), (200.0, 300.0)]
    t.known = [(0.0, 50.0, "a"), (120.0, 130.0, "b"), (250.0, 400.0, "c")]
    assert t.gaps(100.0, 200.0) == [(100.0, 120.0), (130.0, 200.0)]
    assert t.missing(np.array([10.0, 60.0, 125.0, 199.0, 260.0])) == [(50.0, 100.0), (100.0, 120.0), (130.0, 200.0)]
    assert t.covered(np.array([-1.0, 0.0, 49.9, 50.0, 399.0, 400.0])).tolist() == [False, True, True, False, True,
                                                                                     False]
    assert t.expired(130.0) == ["a", "b"]


async def test_retention_keeps_raw_ticks_1m_candles_and_rollups_for_their_own_spans(aio, pg_url):
    """Ticks older than raw retention make candles but no raw row; older than 1m retention, only
    rollups. Partitions are made at open around now; maintenance later drops those wholly past
    retention (whole tables, gone from the catalog), and rollups stay."""
    now = time.time()
    store = PostgresStore(pg_url, retention_raw=2 * DAY, retention_1m=14 * DAY)
    await store.open()
    try:
        raw = await partitions(pg_url, "ticks_raw")
        today = math.floor(now / DAY) * DAY
        assert [lo for lo, _ in raw] == [today - DAY, today, today + DAY, today + 2 * DAY]
        assert any(lo <= now < hi for lo, hi in await partitions(pg_url, "ohlc_1m"))
        recent = ticks_at("r", "RT", [now - 600 + i for i in range(50)])
        day_old = ticks_at("d", "RT", [now - 1.5 * DAY + i for i in range(30)])
        week_old = ticks_at("w", "RT", [now - 6 * DAY + i for i in range(20)])
        month_old = ticks_at("m", "RT", [now - 40 * DAY + i for i in range(10)])
        await store.write({"RT": recent + day_old + week_old + month_old})
        [[n_raw]] = await sql(pg_url, "SELECT count(*) FROM ticks_raw")
        assert n_raw == len(recent) + len(day_old)
        [[n_1m]] = await sql(pg_url, "SELECT sum(count) FROM ohlc_1m")
        assert n_1m == len(recent) + len(day_old) + len(week_old)
        weeks = await store.candles("RT", 604_800, math.inf, 100)
        assert sum(b.count for b in weeks) == 110  # every tick is in the rollups
        await assert_rollups_match_1m_where_kept(pg_url, now - 14 * DAY)

        # three days on: the partition of the day-old ticks is past retention, and goes whole
        await store.prune(now + 3 * DAY)
        kept = await partitions(pg_url, "ticks_raw")
        assert all(hi > now + 3 * DAY - 2 * DAY - 60 for _, hi in kept)
        assert min(lo for lo, _ in kept) <= now + 3 * DAY - 2 * DAY  # the oldest kept still holds the edge
        [[n_raw]] = await sql(pg_url, "SELECT count(*) FROM ticks_raw")
        assert n_raw == sum(1 for t in recent + day_old if t.ts >= min(lo for lo, _ in kept))
        left = await sql(pg_url, "SELECT count(*) FROM pg_class WHERE relname LIKE 'ticks_raw_%' AND relkind = 'r'")
        assert left[0][0] == len(kept)  # detached partitions are dropped, not left behind
        # twenty days on: the 1m partitions of the week-old ticks go too; rollups are kept
        await store.prune(now + 20 * DAY)
        assert all(hi > now + 20 * DAY - 14 * DAY - 60 for _, hi in await partitions(pg_url, "ohlc_1m"))
        assert sum(b.count for b in await store.candles("RT", 604_800, math.inf, 100)) == 110
    finally:
        await store.close()


async def assert_rollups_match_1m_where_kept(url: str, floor_1m: float) -> None:
    """Rollup counts equal their 1m bars' for the buckets whose minutes are all within 1m retention."""
    since = int(floor_1m) + 604_800
    got = {(r[0], r[1]): r[2] for r in await sql(url, "SELECT interval, bucket_start, count FROM ohlc_rollups "
                                                       "WHERE bucket_start >= $1", since)}
    want: dict[tuple[int, int], int] = {}
    for b, c in await sql(url, "SELECT bucket_start, count FROM ohlc_1m WHERE bucket_start >= $1", since):
        for interval in (300, 900, 3_600, 14_400, 86_400, 604_800):
            offset = 345_600 if interval == 604_800 else 0
            key = (interval, b - (b - offset) % interval)
            want[key] = want.get(key, 0) + c
    assert got, "no rollup within 1m retention"
    assert got == {k: v for k, v in want.items() if k[1] >= since}


async def test_a_partition_dropped_under_a_writer_is_made_again(aio, pg_url):
    """Another process drops the partition a store believes in (or it was never made): the write
    fails on it once, the store makes it again and the flush commits, exactly once."""
    store = PostgresStore(pg_url)
    await store.open()
    try:
        now = time.time()
        await store.write({"DP": ticks_at("a", "DP", [now - 10, now - 5])})
        [(name,)] = await sql(pg_url, """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'ticks_raw'::regclass AND c.relname LIKE $1""",
                              f"ticks_raw_{time.strftime('%Y%m%d', time.gmtime(now))}%")

        async def drop():
            con = await asyncpg.connect(pg_url)
            try:
                await con.execute(f"ALTER TABLE ticks_raw DETACH PARTITION {name}")
                await con.execute(f"DROP TABLE {name}")
            finally:
                await con.close()
        await aio_as_trio(drop)()
        await store.write({"DP": ticks_at("b", "DP", [now - 3, now - 2])})
        [[count]] = await sql(pg_url, "SELECT count(*) FROM ticks_raw")
        assert count == 2
        [[n_1m]] = await sql(pg_url, "SELECT sum(count) FROM ohlc_1m")
        assert n_1m == 4  # the candles kept the first two, the raw rows went with their partition
        await assert_rollups_match_1m(pg_url)
    finally:
        await store.close()


async def test_stores_making_the_same_partitions_at_once_both_succeed(aio, pg_url):
    """Two processes writing to a day no partition holds yet: one makes it, the other finds it."""
    stores = [PostgresStore(pg_url), PostgresStore(pg_url)]
    for s in stores:
        await s.open()
    try:
        old = time.time() - 100 * DAY
        async with trio.open_nursery() as n:
            for i, s in enumerate(stores):
                n.start_soon(s.write, {f"C{i}": ticks_at(f"c{i}", f"C{i}", [old + j for j in range(20)])})
        [[count]] = await sql(pg_url, "SELECT count(*) FROM ticks_raw")
        assert count == 40
        slot = math.floor(old / DAY) * DAY
        assert (slot, slot + DAY) in await partitions(pg_url, "ticks_raw")
    finally:
        for s in stores:
            await s.close()


async def test_a_partition_past_retention_attached_by_hand_goes_at_the_next_maintenance(aio, pg_url):
    """Whatever made it (an operator, a restore), a partition wholly past retention is dropped by
    the next maintenance step, while writes go on."""
    store = PostgresStore(pg_url, retention_raw=3 * DAY, retention_1m=30 * DAY)
    await store.open()
    try:
        old = (math.floor(time.time() / DAY) - 10) * DAY
        await sql(pg_url, "CREATE TABLE ticks_raw_by_hand (LIKE ticks_raw INCLUDING DEFAULTS)")
        await sql(pg_url, f"ALTER TABLE ticks_raw ATTACH PARTITION ticks_raw_by_hand FOR VALUES FROM ({old}) "
                          f"TO ({old + DAY})")
        await sql(pg_url, "INSERT INTO ticks_raw VALUES ($1, 1, 1, 1, 1, '\\x00')", float(old + 5))
        async with trio.open_nursery() as n:
            n.start_soon(store.prune, time.time())
            n.start_soon(store.write, {"H": ticks_at("h", "H", [time.time() - 1])})
        assert (old, old + DAY) not in await partitions(pg_url, "ticks_raw")
        [[gone]] = await sql(pg_url, "SELECT to_regclass('ticks_raw_by_hand') IS NULL")
        assert gone
        [[count]] = await sql(pg_url, "SELECT count(*) FROM ticks_raw")
        assert count == 1
    finally:
        await store.close()


async def test_maintenance_with_the_database_away_neither_raises_nor_repeats_itself(aio, caplog):
    """The engine calls prune every maintenance period: with no database it returns quietly (the
    outage is logged once, as for any operation), so it never stops the engine."""
    import logging

    from tests.conftest import free_port

    caplog.set_level(logging.INFO)
    store = PostgresStore(f"postgresql://127.0.0.1:{free_port()}/cw", connect_timeout=1.0)
    await store.open()
    try:
        for _ in range(3):
            await store.prune(time.time())
        text = caplog.text
        assert "partition_maintenance_failed" not in text
        assert text.count("database_unavailable") == 1
    finally:
        await store.close()
