"""Schema v3 upgrades a v2 database in place: rows, dedupe, candles and rollups survive the move; v4 adds the import ledger.

The v2 database is made with the v2 migrations (001, 002) and filled the way the v2 code wrote:
text keys (32 hex digits of the digest, as since keys travel as digests, or a client's key, as
before), text symbols, arrival numbers from an identity, both 1m tables merged by the v2 flush
statement (frozen below, as it was in ``_pg_sql`` before v3).
"""

from __future__ import annotations

import math
import random
import time

import asyncpg
import pytest
import trio
from trio_asyncio import aio_as_trio

from candlewick.schema import Tick, digest_key
from candlewick.storage.postgres import PostgresStore, migrate
from tests.integration.test_pg_faults import assert_aggregates_match_raw, sql

T0 = (int(time.time()) // 3600 - 5) * 3600

V2_FLUSH = """WITH new AS (
    INSERT INTO ticks_raw (idempotency_key, symbol, price, ts, volume)
    SELECT k, s, p, t, v FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[], $5::float8[])
        WITH ORDINALITY AS a(k, s, p, t, v, ord) ORDER BY ord
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING symbol, price, ts, volume, seq
), agg AS (
    SELECT symbol, (floor(ts / 60) * 60)::bigint AS bucket_start,
           (array_agg(price ORDER BY ts, seq))[1] AS open, min(ts) AS open_ts,
           max(price) AS high, min(price) AS low,
           (array_agg(price ORDER BY ts DESC, seq DESC))[1] AS close, max(ts) AS close_ts,
           count(*) AS count, sum(volume) AS volume, sum(price) AS psum, sum(price * volume) AS pv
    FROM new GROUP BY 1, 2
), o AS (
    INSERT INTO ohlc_1m AS o (symbol, bucket_start, open, open_ts, high, low, close, close_ts, count, volume)
    SELECT symbol, bucket_start, open, open_ts, high, low, close, close_ts, count, volume FROM agg
    ON CONFLICT (symbol, bucket_start) DO UPDATE SET
        open = CASE WHEN excluded.open_ts < o.open_ts THEN excluded.open ELSE o.open END,
        open_ts = LEAST(o.open_ts, excluded.open_ts), high = GREATEST(o.high, excluded.high),
        low = LEAST(o.low, excluded.low),
        close = CASE WHEN excluded.close_ts >= o.close_ts THEN excluded.close ELSE o.close END,
        close_ts = GREATEST(o.close_ts, excluded.close_ts), count = o.count + excluded.count,
        volume = o.volume + excluded.volume
), m AS (
    INSERT INTO metrics_1m AS m (symbol, bucket_start, count, sum, min, max, last, last_ts, volume_sum, pv_sum)
    SELECT symbol, bucket_start, count, psum, low, high, close, close_ts, volume, pv FROM agg
    ON CONFLICT (symbol, bucket_start) DO UPDATE SET
        count = m.count + excluded.count, sum = m.sum + excluded.sum, min = LEAST(m.min, excluded.min),
        max = GREATEST(m.max, excluded.max),
        last = CASE WHEN excluded.last_ts >= m.last_ts THEN excluded.last ELSE m.last END,
        last_ts = GREATEST(m.last_ts, excluded.last_ts), volume_sum = m.volume_sum + excluded.volume_sum,
        pv_sum = m.pv_sum + excluded.pv_sum
), s AS (
    INSERT INTO symbols (symbol) SELECT DISTINCT symbol FROM agg ON CONFLICT DO NOTHING
)
SELECT count(*) FROM new"""


def v2_key(key: str, as_digest: bool) -> str:
    """What v2 stored for a client's key: its digest's 32 hex digits, or (older rows) the key itself."""
    return digest_key(key.encode()).hex() if as_digest else key


async def make_v2_database(url: str, ticks: list[Tick], digest_share: float, rng: random.Random) -> None:
    """Schema v2 (migrations 001 and 002, recorded as applied), filled by the v2 flush in batches."""
    from candlewick.storage._pg_migrate import migrations

    async def run():
        con = await asyncpg.connect(url)
        try:
            await con.execute("CREATE TABLE schema_migrations "
                              "(version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            for version, script in migrations():
                if version <= 2:
                    await con.execute(script)
                    await con.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            for i in range(0, len(ticks), 500):
                part = ticks[i:i + 500]
                keys = [v2_key(t.key, rng.random() < digest_share) for t in part]
                await con.fetchval(V2_FLUSH, keys, [t.symbol for t in part], [t.price for t in part],
                                   [t.ts for t in part], [t.volume for t in part])
        finally:
            await con.close()
    await aio_as_trio(run)()


def history(rng: random.Random, n: int, tag: str, t0: float = T0) -> list[Tick]:
    """Ticks over four hours and three symbols, out of time order, with ties in trade time."""
    return [Tick(f"{tag}{i}", rng.choice(["MA", "MB", "MC"]), float(rng.randint(10, 90)),
                 t0 + rng.randint(0, 4 * 3600 // 5) * 5.0, rng.choice([0.25, 0.5, 1.0, 2.0])) for i in range(n)]


@pytest.mark.parametrize("how", ["candlewick migrate", "the store at open"])
async def test_a_v2_database_is_upgraded_in_place(aio, pg_url, how):
    """After the upgrade: every tick is there once with its digest key (hex decoded, text keys
    digested), 1m candles and metrics keep their values, rollups equal the 1m bars rolled up, the
    book reloads digests, a retried tick (by the client's own key) is refused, new ticks continue
    after the old arrival numbers, and candles of every interval answer."""
    rng = random.Random(17)
    ticks = history(rng, 3_000, "old")
    await make_v2_database(pg_url, ticks, digest_share=0.7, rng=rng)
    before = await sql(pg_url, "SELECT symbol, bucket_start, open, close, count, volume FROM ohlc_1m ORDER BY 1, 2")
    [[max_seq]] = await sql(pg_url, "SELECT max(seq) FROM ticks_raw")
    if how == "candlewick migrate":
        assert await migrate(pg_url) == [3, 4]
        assert await migrate(pg_url) == []
    store = PostgresStore(pg_url)
    await store.open()
    try:
        [[version]] = await sql(pg_url, "SELECT max(version) FROM schema_migrations")
        assert version == 4
        rows = await sql(pg_url, "SELECT idempotency_key, symbol, price, ts, volume FROM ticks")
        assert sorted((bytes(r[0]), r[1], r[2], r[3], r[4]) for r in rows) == \
            sorted((digest_key(t.key.encode()), t.symbol, t.price, t.ts, t.volume) for t in ticks)
        after = await sql(pg_url, "SELECT s.symbol, o.bucket_start, o.open, o.close, o.count, o.volume "
                                  "FROM ohlc_1m o JOIN symbols s ON s.id = o.symbol_id ORDER BY 1, 2")
        assert [tuple(r) for r in after] == [tuple(r) for r in before]
        await assert_aggregates_match_raw(pg_url)  # 1m against raw, rollups against 1m
        seed = await store.load_book("MA", lateness=600)
        newest = max(t.ts for t in ticks if t.symbol == "MA")
        assert {k for k, _ in seed.keys} == {digest_key(t.key.encode()) for t in ticks
                                             if t.symbol == "MA" and t.ts >= newest - 600}
        # a retry of old ticks (the client's own keys) changes nothing; new ticks are merged
        retry = [t for t in ticks[:200]]
        fresh = history(rng, 200, "new")
        await store.write({"MA": [t for t in retry + fresh if t.symbol == "MA"],
                           "MB": [t for t in retry + fresh if t.symbol == "MB"],
                           "MC": [t for t in retry + fresh if t.symbol == "MC"]})
        assert store.exact_writes == 1
        [[count]] = await sql(pg_url, "SELECT count(*) FROM ticks_raw")
        assert count == len(ticks) + len(fresh)
        [[new_min]] = await sql(pg_url, "SELECT min(t.seq) FROM ticks t WHERE idempotency_key = ANY($1::bytea[])",
                                [digest_key(t.key.encode()) for t in fresh])
        assert new_min > max_seq
        await assert_aggregates_match_raw(pg_url)
        for interval in (60, 300, 900, 3_600, 14_400, 86_400, 604_800):
            bars = await store.candles("MB", interval, math.inf, 5_000)
            assert sum(b.count for b in bars) == sum(1 for t in ticks + fresh if t.symbol == "MB"), interval
    finally:
        await store.close()


async def test_processes_starting_together_migrate_once(aio, pg_url):
    """Two migrations at once (two processes starting): the advisory lock lets one apply v3, the
    other finds it done."""
    rng = random.Random(5)
    await make_v2_database(pg_url, history(rng, 500, "x"), digest_share=0.5, rng=rng)
    results = []

    async def one():
        results.append(await migrate(pg_url))
    async with trio.open_nursery() as n:
        n.start_soon(one)
        n.start_soon(one)
    assert sorted(results) == [[], [3, 4]]
    await assert_aggregates_match_raw(pg_url)


async def test_migrate_makes_the_import_ledger_and_keeps_one_the_command_made(aio, pg_url):
    """v4 makes the ledger of ``candlewick import`` (import_files, import_chunks), empty; a database whose
    ledger the command made itself before v4 keeps its rows."""
    assert await migrate(pg_url) == [1, 2, 3, 4]
    assert [tuple(r) for r in await sql(pg_url, "SELECT (SELECT count(*) FROM import_files), "
                                                "(SELECT count(*) FROM import_chunks)")] == [(0, 0)]
    await sql(pg_url, "DELETE FROM schema_migrations WHERE version = 4")  # as before v4, with the tables made
    await sql(pg_url, "INSERT INTO import_files (identity, file_name, source, batch, rows_total) "
                      "VALUES ($1, 'a.csv', 'import:a.csv', 10, 20)", b"\x01")
    await sql(pg_url, "INSERT INTO import_chunks (identity, chunk, rows, rows_raw, rows_old, rows_live) "
                      "VALUES ($1, 0, 10, 10, 0, 0)", b"\x01")
    assert await migrate(pg_url) == [4]
    assert [tuple(r) for r in await sql(pg_url, "SELECT file_name, rows_total FROM import_files")] == [("a.csv", 20)]
    assert [tuple(r) for r in await sql(pg_url, "SELECT chunk, rows FROM import_chunks")] == [(0, 10)]
