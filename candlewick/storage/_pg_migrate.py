"""Schema migrations: the SQL of ``candlewick/schema/migrations``, and the Python step of v3.

Each version runs in one transaction under an advisory lock, so several processes may start at
once and a failed migration leaves the database as it was. v3 moves the rows of a v2 database
(text keys, one big b-tree) into the partitioned tables; see docs/ARCHITECTURE.md, "Storage".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

import asyncpg
import numpy as np

from candlewick.schema import digest_key, digests_from_bytes
from candlewick.storage._pg_columns import (DIGEST, FLOAT8, INT4, INT8, INTERVAL_OFFSETS, RAW_COLUMNS, ROLLUPS,
                                            copy_binary)
from candlewick.storage._pg_partitions import PartitionedTable

MIGRATION_LOCK = 0x63616E64  # "cand"
STATEMENT_TIMEOUT = 24 * 3600.0
"""Seconds a migration statement may take: moving a large v2 table is one statement."""
RAW_WIDTH = 86_400
"""Seconds each raw partition spans, by default (``PG_PARTITION_RAW``)."""
WIDTH_1M = 7 * 86_400
"""Seconds each ``ohlc_1m`` partition spans: a week of minutes."""
CHUNK = 50_000


def raw_table(width: int = RAW_WIDTH) -> PartitionedTable:
    return PartitionedTable("ticks_raw", "ts", width)


def table_1m() -> PartitionedTable:
    return PartitionedTable("ohlc_1m", "bucket_start", WIDTH_1M, fillfactor=80)


def migrations() -> list[tuple[int, str]]:
    """The schema's migrations (``candlewick/schema/migrations/NNN_*.sql``) as (NNN, SQL), in order."""
    folder = resources.files("candlewick.schema") / "migrations"
    out = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            out.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(out)


async def apply(con: asyncpg.Connection) -> list[int]:
    """Apply pending migrations under an advisory lock; safe when several processes start at once."""
    applied = []
    await con.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await con.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                          "(version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r[0] for r in await con.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migrations():
            if version in done:
                continue
            async with con.transaction():
                await con.execute(sql, timeout=STATEMENT_TIMEOUT)
                step = PYTHON_STEPS.get(version)
                if step is not None:
                    await step(con)
                await con.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
    finally:
        await con.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied


async def _partitions_for(con: asyncpg.Connection, table: PartitionedTable, query: str) -> None:
    """Create ``table``'s partitions for every slot that ``query`` (one column of values) names."""
    slots = [r[0] for r in await con.fetch(query, table.width, timeout=STATEMENT_TIMEOUT)]
    if slots:
        await table.create(con, np.array(slots, dtype=np.float64) * table.width)


async def _v3(con: asyncpg.Connection) -> None:
    """Move v2's rows into v3's tables, in the migration's transaction.

    Keys of 32 hex digits are digests already (what v2 stored since keys travel as digests) and are
    decoded in SQL; any other key is a client's key from before, digested here (XXH3-128 of its UTF-8
    bytes) as the decoder would. Arrival numbers are kept, and the sequence continues above them.
    1-minute rows keep their values; the rollups are computed from them in SQL.
    """
    raw, m1 = raw_table(), table_1m()
    # Rows go in without the primary keys, which are then built once by sorting: several times
    # faster than growing them a row at a time. (v2 held each key once, so no row can collide.)
    await con.execute("SET LOCAL maintenance_work_mem = '256MB'")
    await con.execute("ALTER TABLE ticks_raw DROP CONSTRAINT ticks_raw_pkey")
    await con.execute("ALTER TABLE ohlc_1m DROP CONSTRAINT ohlc_1m_pkey")
    await _partitions_for(con, raw, "SELECT DISTINCT floor(ts / $1)::bigint FROM ticks_raw_v2")
    await _partitions_for(con, m1, "SELECT DISTINCT floor(bucket_start::float8 / $1)::bigint FROM ohlc_1m_v2")
    await con.execute("""INSERT INTO ticks_raw (ts, price, volume, seq, symbol_id, idempotency_key)
        SELECT t.ts, t.price, t.volume, t.seq, s.id, decode(t.idempotency_key, 'hex')
        FROM ticks_raw_v2 t JOIN symbols s USING (symbol) WHERE t.idempotency_key ~ '^[0-9a-fA-F]{32}$'""",
                      timeout=STATEMENT_TIMEOUT)
    await _v3_text_keys(con)
    await con.execute("SELECT setval('ticks_raw_seq', max(seq)) FROM ticks_raw_v2 HAVING max(seq) IS NOT NULL")
    await con.execute("""INSERT INTO ohlc_1m (bucket_start, open, open_ts, high, low, close, close_ts, count, volume,
                                              psum, pv, symbol_id)
        SELECT o.bucket_start, o.open, o.open_ts, o.high, o.low, o.close, o.close_ts, o.count, o.volume,
               m.sum, m.pv_sum, s.id
        FROM ohlc_1m_v2 o JOIN metrics_1m m USING (symbol, bucket_start) JOIN symbols s USING (symbol)""",
                      timeout=STATEMENT_TIMEOUT)
    await con.execute("ALTER TABLE ticks_raw ADD CONSTRAINT ticks_raw_pkey PRIMARY KEY (symbol_id, ts, idempotency_key)",
                      timeout=STATEMENT_TIMEOUT)
    await con.execute("ALTER TABLE ohlc_1m ADD CONSTRAINT ohlc_1m_pkey PRIMARY KEY (symbol_id, bucket_start)",
                      timeout=STATEMENT_TIMEOUT)
    source = "ohlc_1m"  # each rollup from the one before: every interval divides the next (weeks start on a day)
    for interval in ROLLUPS:
        sql = ROLLUP_FROM.format(interval=interval, offset=INTERVAL_OFFSETS[interval], source=source)
        await con.execute(sql, timeout=STATEMENT_TIMEOUT)
        source = f"ohlc_rollups WHERE interval = {interval}"
    await con.execute("DROP TABLE ticks_raw_v2, ohlc_1m_v2, metrics_1m", timeout=STATEMENT_TIMEOUT)


async def _v3_text_keys(con: asyncpg.Connection) -> None:
    """The v2 rows whose key is a client's text: digested here, a chunk at a time (a cursor)."""
    await con.execute("CREATE TEMP TABLE v3_text_keys (LIKE ticks_raw) ON COMMIT DROP")
    await con.execute("""DECLARE v3_text_keys_cursor NO SCROLL CURSOR FOR
        SELECT t.ts, t.price, t.volume, t.seq, s.id, t.idempotency_key
        FROM ticks_raw_v2 t JOIN symbols s USING (symbol) WHERE t.idempotency_key !~ '^[0-9a-fA-F]{32}$'""")
    moved = False
    while rows := await con.fetch(f"FETCH {CHUNK} FROM v3_text_keys_cursor", timeout=STATEMENT_TIMEOUT):
        ts, price, volume, seq, ids, keys = zip(*rows)
        digests = digests_from_bytes(b"".join(digest_key(k.encode()) for k in keys))
        data = copy_binary([(FLOAT8, np.array(ts)), (FLOAT8, np.array(price)), (FLOAT8, np.array(volume)),
                            (INT8, np.array(seq)), (INT4, np.array(ids)), (DIGEST, digests)])
        await con.copy_to_table("v3_text_keys", source=data, columns=RAW_COLUMNS, format="binary",
                                timeout=STATEMENT_TIMEOUT)
        moved = True
    await con.execute("CLOSE v3_text_keys_cursor")
    if moved:
        await con.execute("INSERT INTO ticks_raw SELECT * FROM v3_text_keys", timeout=STATEMENT_TIMEOUT)


# Rollups of one interval (its offset: Monday for weeks) from the bars of a finer one: a bucket's
# finer bars hold disjoint trade times, so open is its first bar's, close its last bar's.
ROLLUP_FROM = """INSERT INTO ohlc_rollups (bucket_start, open, open_ts, high, low, close, close_ts, count, volume,
                                              psum, pv, symbol_id, interval)
SELECT b, (array_agg(open ORDER BY bucket_start))[1], min(open_ts), max(high), min(low),
       (array_agg(close ORDER BY bucket_start DESC))[1], max(close_ts), sum(count)::bigint,
       sum(volume ORDER BY bucket_start), sum(psum ORDER BY bucket_start), sum(pv ORDER BY bucket_start),
       symbol_id, {interval}
FROM (SELECT *, bucket_start - ((bucket_start - {offset}) % {interval} + {interval}) % {interval} AS b
      FROM {source}) m
GROUP BY symbol_id, b"""

PYTHON_STEPS: dict[int, Callable[[asyncpg.Connection], Awaitable[None]]] = {3: _v3}
