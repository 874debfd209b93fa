"""PostgresStore: the durable Store, asyncpg through trio-asyncio at this one boundary.

Every database operation is one complete asyncio coroutine (acquire -> transaction -> SQL ->
release) called from trio with ``aio_as_trio``; no asyncpg context manager is ever entered
from trio code, so a cancellation cannot strand a connection (see STACK-NOTES.md).

A flush is one transaction. Fast path: COPY the ticks (the flusher's ``Tick`` tuples as they
are, binary) straight into ``ticks_raw``, then one statement upserting ``ohlc_1m``/``metrics_1m``
from per-(symbol, minute) aggregates the store computed from those same ticks (``merge_rows``).
That is exact because the primary key is the idempotency key: if any key of the batch is
already stored, the COPY fails and the whole transaction rolls back. Such a batch (a retry after
a commit whose answer was lost, another process, the same key under two symbols) is written by
the exact path instead: COPY into a per-connection temporary staging table, then one statement
doing ``INSERT ... ON CONFLICT (idempotency_key) DO NOTHING RETURNING`` and merging only the
returned (really new) rows, grouped per (symbol, minute), with upserts that compare
``open_ts``/``close_ts``. A retried or replayed flush therefore never counts twice. The fast
path costs Postgres about half the CPU per tick of the exact one (no speculative insertion,
no RETURNING tuple store, no GROUP BY with sorted array_agg).

Migrations (``schema/migrations/NNN_*.sql``) run under an advisory lock, at start and before
the first operation after the database comes back; the store never raises at open, so the
engine starts and reports ``db: fail`` while the database is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from importlib import resources
from itertools import chain
from operator import mul

import asyncpg
import structlog
import trio
from trio_asyncio import aio_as_trio

from candlewick.domain import SMA_N, bucket_of
from candlewick.errors import StoreUnavailable
from candlewick.schema import Bar, SymbolInfo, Tick
from candlewick.storage._protocol import BookSeed, Cursor, RawTick

log = structlog.get_logger("candlewick.postgres")

MIGRATION_LOCK = 0x63616E64  # "cand"

STAGING = """CREATE TEMP TABLE IF NOT EXISTS staging_ticks (
    ord int, idempotency_key text COLLATE "C", symbol text COLLATE "C", price float8, ts float8, volume float8
) ON COMMIT DELETE ROWS"""

# The aggregate upserts, shared by both write paths. ``agg`` holds one row per (symbol, minute)
# of really-new ticks. Rows are taken in one lock order (symbol bytewise, then minute) by every
# writer, so concurrent writers never deadlock.
UPSERT_AGGREGATES = """o AS (
    INSERT INTO ohlc_1m AS o (symbol, bucket_start, open, open_ts, high, low, close, close_ts, count, volume)
    SELECT symbol, bucket_start, open, open_ts, high, low, close, close_ts, count, volume FROM agg
    ORDER BY symbol COLLATE "C", bucket_start
    ON CONFLICT (symbol, bucket_start) DO UPDATE SET
        open = CASE WHEN excluded.open_ts < o.open_ts THEN excluded.open ELSE o.open END,
        open_ts = LEAST(o.open_ts, excluded.open_ts),
        high = GREATEST(o.high, excluded.high),
        low = LEAST(o.low, excluded.low),
        close = CASE WHEN excluded.close_ts >= o.close_ts THEN excluded.close ELSE o.close END,
        close_ts = GREATEST(o.close_ts, excluded.close_ts),
        count = o.count + excluded.count,
        volume = o.volume + excluded.volume
), m AS (
    INSERT INTO metrics_1m AS m (symbol, bucket_start, count, sum, min, max, last, last_ts, volume_sum, pv_sum)
    SELECT symbol, bucket_start, count, psum, low, high, close, close_ts, volume, pv FROM agg
    ORDER BY symbol COLLATE "C", bucket_start
    ON CONFLICT (symbol, bucket_start) DO UPDATE SET
        count = m.count + excluded.count,
        sum = m.sum + excluded.sum,
        min = LEAST(m.min, excluded.min),
        max = GREATEST(m.max, excluded.max),
        last = CASE WHEN excluded.last_ts >= m.last_ts THEN excluded.last ELSE m.last END,
        last_ts = GREATEST(m.last_ts, excluded.last_ts),
        volume_sum = m.volume_sum + excluded.volume_sum,
        pv_sum = m.pv_sum + excluded.pv_sum
), s AS (
    INSERT INTO symbols (symbol) SELECT DISTINCT symbol FROM agg ON CONFLICT DO NOTHING
)"""

# Fast path, second statement: the batch's ticks were COPY'd straight into ticks_raw in this
# transaction (so every one of them is new: a known key would have aborted the COPY), and the
# store aggregated them per (symbol, minute) in the same order; merge those rows.
MERGE = """WITH agg AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], $5::float8[], $6::float8[],
                         $7::float8[], $8::float8[], $9::bigint[], $10::float8[], $11::float8[], $12::float8[])
        AS a(symbol, bucket_start, open, open_ts, high, low, close, close_ts, count, volume, psum, pv)
), """ + UPSERT_AGGREGATES + """
SELECT count(*) FROM agg"""

# Exact path (a batch holding a key that is already stored: a retry after a commit whose outcome
# was lost, another process, the same key under two symbols): one statement inserts the staged
# ticks and merges only the rows really inserted (RETURNING) into both aggregate tables. Ties in
# trade time follow arrival order (seq), as in the book.
FLUSH = """WITH new AS (
    INSERT INTO ticks_raw (idempotency_key, symbol, price, ts, volume)
    SELECT idempotency_key, symbol, price, ts, volume FROM staging_ticks ORDER BY ord
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING symbol, price, ts, volume, seq
), agg AS (
    -- floor(ts / 60): IEEE division then floor, bit-for-bit what the book computes (bucket_of)
    SELECT symbol, (floor(ts / 60) * 60)::bigint AS bucket_start,
           (array_agg(price ORDER BY ts, seq))[1] AS open, min(ts) AS open_ts,
           max(price) AS high, min(price) AS low,
           (array_agg(price ORDER BY ts DESC, seq DESC))[1] AS close, max(ts) AS close_ts,
           count(*) AS count, sum(volume) AS volume, sum(price) AS psum, sum(price * volume) AS pv
    FROM new GROUP BY 1, 2
), """ + UPSERT_AGGREGATES + """
SELECT count(*) FROM new"""

OUTBOX_INSERT = "INSERT INTO sse_outbox (rows) VALUES ($1) RETURNING id"
OUTBOX_PENDING = """SELECT id, rows FROM sse_outbox WHERE created_at < now() - make_interval(secs => $1)
ORDER BY id LIMIT $2"""
OUTBOX_DELETE = "DELETE FROM sse_outbox WHERE id = ANY($1::bigint[])"

EXACT_AFTER_DUPLICATE = 8
"""Flushes that go straight to the exact path after one held an already-stored key: when
duplicates keep reaching the store (several processes fed the same ticks), at most one fast
attempt in nine is wasted on a rollback."""

TICK_COLUMNS = ["idempotency_key", "symbol", "price", "ts", "volume"]  # Tick's fields, in order
STAGING_COLUMNS = ["ord", *TICK_COLUMNS]

BARS = """SELECT o.bucket_start, o.open, o.open_ts, o.high, o.low, o.close, o.close_ts, o.count, o.volume,
       m.pv_sum, m.sum
FROM ohlc_1m o JOIN metrics_1m m USING (symbol, bucket_start)
WHERE o.symbol = $1 AND o.bucket_start < $2::float8
ORDER BY o.bucket_start DESC LIMIT $3"""


BARS_SINCE = """SELECT o.bucket_start, o.open, o.open_ts, o.high, o.low, o.close, o.close_ts, o.count, o.volume,
       m.pv_sum, m.sum
FROM ohlc_1m o JOIN metrics_1m m USING (symbol, bucket_start)
WHERE o.symbol = $1 AND o.bucket_start >= $2
ORDER BY o.bucket_start"""


def _bar(row) -> Bar:
    bar = Bar.__new__(Bar)
    (bar.bucket, bar.open, bar.open_ts, bar.high, bar.low, bar.close, bar.close_ts, bar.count, bar.volume,
     bar.pv, bar.psum) = row
    return bar


def migrations() -> list[tuple[int, str]]:
    folder = resources.files("candlewick.schema") / "migrations"
    out = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            out.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(out)


async def _aio_migrate(con: asyncpg.Connection) -> list[int]:
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
                await con.execute(sql)
                await con.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
    finally:
        await con.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied


async def migrate(dsn: str) -> list[int]:
    """``candlewick migrate``: apply pending migrations (runs inside trio-asyncio)."""

    async def run() -> list[int]:
        con = await asyncpg.connect(dsn, timeout=10)
        try:
            return await _aio_migrate(con)
        finally:
            await con.close()

    return await aio_as_trio(run)()


class PostgresStore:
    name = "postgres"

    def __init__(self, dsn: str, *, pool_size: int = 4, command_timeout: float = 10.0,
                 connect_timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.command_timeout = command_timeout
        self.connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._migrated = False
        self._migrate_lock = trio.Lock()
        self.fast_writes = 0
        """Flushes committed by the fast path (COPY straight into ticks_raw)."""
        self.exact_writes = 0
        """Flushes committed by the exact path (the batch held an already-stored key, or came
        just after one that did)."""
        self._exact_next = 0

    # -- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        try:
            await self._ready()
        except Exception as exc:  # noqa: BLE001 - a database that is down at start is retried later
            log.error("database_unavailable", error=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with trio.move_on_after(5, shield=True) as scope:
            await aio_as_trio(pool.close)()
        if scope.cancelled_caught:
            pool.terminate()

    async def _ready(self) -> asyncpg.Pool:
        if self._pool is None:
            async def create() -> asyncpg.Pool:
                return await asyncpg.create_pool(self.dsn, min_size=0, max_size=self.pool_size,
                                                 command_timeout=self.command_timeout, timeout=self.connect_timeout,
                                                 max_inactive_connection_lifetime=60,
                                                 init=_aio_init_connection)
            self._pool = await aio_as_trio(create)()
        if not self._migrated:
            async with self._migrate_lock:
                if not self._migrated:
                    pool = self._pool

                    async def run() -> list[int]:
                        async with pool.acquire() as con:
                            return await _aio_migrate(con)
                    applied = await aio_as_trio(run)()
                    if applied:
                        log.info("migrations_applied", versions=applied)
                    self._migrated = True
        return self._pool

    async def _call(self, fn, *args):
        """Run one complete asyncio coroutine ``fn(connection, *args)`` on a pooled connection.

        Losing the database is ``StoreUnavailable`` (503 with Retry-After), never a 500.
        """
        try:
            pool = await self._ready()

            async def run():
                async with pool.acquire() as con:
                    return await fn(con, *args)
            return await aio_as_trio(run)()
        except (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.CannotConnectNowError) as exc:
            raise StoreUnavailable(f"the database is unreachable ({type(exc).__name__}); retry later") from exc

    async def check(self) -> bool:
        try:
            with trio.fail_after(2):
                return await self._call(_aio_fetchval, "SELECT 1") == 1
        except (Exception, trio.TooSlowError):  # noqa: BLE001 - readiness reports, never raises
            return False

    # -- writes ---------------------------------------------------------------------------------
    async def write(self, batch: Mapping[str, Sequence[Tick]], outbox: bytes | None = None) -> int | None:
        """Commit a flush. With ``outbox`` (the flush's events as bus rows, JSON), the same
        transaction stores them in ``sse_outbox``; returns that row's id (else None)."""
        if not any(batch.values()):
            return None
        if self._exact_next:  # duplicates reached the store lately: skip the attempt doomed to roll back
            self._exact_next -= 1
            _, row = await self._call(_aio_write, batch, None, outbox)
            self.exact_writes += 1
            return row
        fast, row = await self._call(_aio_write, batch, merge_rows(batch), outbox)
        if fast:
            self.fast_writes += 1
        else:
            self.exact_writes += 1
            self._exact_next = EXACT_AFTER_DUPLICATE
        return row

    async def outbox_pending(self, older_than: float, limit: int = 64) -> list[tuple[int, bytes]]:
        """Outbox rows at least ``older_than`` seconds old (by the database's clock), oldest first."""
        rows = await self._call(_aio_fetch, OUTBOX_PENDING, float(older_than), limit)
        return [(r[0], bytes(r[1])) for r in rows]

    async def outbox_delete(self, ids: Sequence[int]) -> None:
        if ids:
            await self._call(_aio_execute, OUTBOX_DELETE, list(ids))

    async def prune(self, now: float) -> None:
        pass  # retention of the durable store is the operator's policy (partitioning), not ours

    async def upsert_symbols(self, items: Sequence[SymbolInfo]) -> int:
        rows = {s.symbol: s for s in items}  # one statement must not hold the same key twice
        await self._call(_aio_upsert_symbols, [(s.symbol, s.base, s.quote, s.active) for s in rows.values()])
        return len(items)

    # -- reads ----------------------------------------------------------------------------------
    async def symbols(self, active_only: bool) -> list[SymbolInfo]:
        sql = "SELECT symbol, base, quote, active FROM symbols" + (" WHERE active" if active_only else "") + \
              " ORDER BY symbol"
        rows = await self._call(_aio_fetch, sql)
        return [SymbolInfo(*r) for r in rows]

    async def latest(self, symbol: str) -> RawTick | None:
        rows = await self._call(_aio_fetch, "SELECT price, ts, volume, seq FROM ticks_raw WHERE symbol = $1 "
                                            "ORDER BY ts DESC, seq DESC LIMIT 1", symbol)
        return RawTick(symbol, *rows[0]) if rows else None

    async def ticks_page(self, symbol: str, before: Cursor | None, limit: int) -> tuple[list[RawTick], Cursor | None]:
        if before is None:
            rows = await self._call(_aio_fetch, "SELECT price, ts, volume, seq FROM ticks_raw WHERE symbol = $1 "
                                                "ORDER BY ts DESC, seq DESC LIMIT $2", symbol, limit + 1)
        else:
            rows = await self._call(_aio_fetch, "SELECT price, ts, volume, seq FROM ticks_raw WHERE symbol = $1 "
                                                "AND (ts, seq) < ($2, $3) ORDER BY ts DESC, seq DESC LIMIT $4",
                                    symbol, before[0], before[1], limit + 1)
        items = [RawTick(symbol, *r) for r in rows[:limit]]
        nxt = (items[-1].ts, items[-1].seq) if len(rows) > limit else None
        return items, nxt

    async def bars_before(self, symbol: str, before: float, limit: int) -> list[Bar]:
        rows = await self._call(_aio_fetch, BARS, symbol, float(before), limit)
        return [_bar(r) for r in rows]

    async def window(self, symbol: str, since: float, until: float) -> Bar | None:
        row = (await self._call(_aio_fetch, """
            SELECT count(*), min(price), max(price), sum(price), sum(volume), sum(price * volume),
                   (array_agg(price ORDER BY ts, seq))[1], min(ts),
                   (array_agg(price ORDER BY ts DESC, seq DESC))[1], max(ts)
            FROM ticks_raw WHERE symbol = $1 AND ts >= $2 AND ts < $3""", symbol, since, until))[0]
        if not row[0]:
            return None
        bar = Bar(int(since), row[6], row[7], 0.0)
        bar.count, bar.low, bar.high, bar.psum, bar.volume, bar.pv = row[0], row[1], row[2], row[3], row[4], row[5]
        bar.close, bar.close_ts = row[8], row[9]
        return bar

    async def load_book(self, symbol: str, lateness: float) -> BookSeed:
        return await self._call(_aio_load_book, symbol, lateness)


# -- the asyncio side: each function is one complete operation on one connection ------------------
async def _aio_fetch(con: asyncpg.Connection, sql: str, *args):
    return await con.fetch(sql, *args)


async def _aio_execute(con: asyncpg.Connection, sql: str, *args):
    return await con.execute(sql, *args)


async def _aio_fetchval(con: asyncpg.Connection, sql: str, *args):
    return await con.fetchval(sql, *args)


async def _aio_upsert_symbols(con: asyncpg.Connection, rows: list[tuple]) -> None:
    await con.executemany("INSERT INTO symbols (symbol, base, quote, active) VALUES ($1, $2, $3, $4) "
                          "ON CONFLICT (symbol) DO UPDATE SET base = excluded.base, quote = excluded.quote, "
                          "active = excluded.active", rows)


async def _aio_write(con: asyncpg.Connection, batch: Mapping[str, Sequence[Tick]], merge: list[list] | None,
                     outbox: bytes | None = None) -> tuple[bool, int | None]:
    """One flush, one transaction. Fast path (``merge`` given): COPY the ticks straight into
    ``ticks_raw`` and merge the aggregates computed from them. The primary key makes that exact:
    if any key is already stored the COPY fails, the transaction rolls back whole, and the exact
    path writes the batch. Returns (True if the fast path committed, the outbox row's id)."""
    if merge is not None:
        try:
            async with con.transaction():
                await con.copy_records_to_table("ticks_raw", records=chain.from_iterable(batch.values()),
                                                columns=TICK_COLUMNS)
                await con.execute(MERGE, *merge)
                row = await con.fetchval(OUTBOX_INSERT, outbox) if outbox is not None else None
            return True, row
        except asyncpg.UniqueViolationError:
            pass
    records = [(i, *t) for i, t in enumerate(chain.from_iterable(batch.values()))]
    async with con.transaction():
        await con.copy_records_to_table("staging_ticks", records=records, columns=STAGING_COLUMNS)
        await con.fetchval(FLUSH)
        row = await con.fetchval(OUTBOX_INSERT, outbox) if outbox is not None else None
    return False, row


def merge_rows(batch: Mapping[str, Sequence[Tick]]) -> list[list]:
    """The batch's ticks aggregated per (symbol, minute), as the columns of ``MERGE``'s ``agg``.

    Same rules as ``Bar.add`` and the exact path's SQL: open is the price at the earliest trade
    time (the first applied on a tie), close the price at the latest (the last applied on a tie).
    Each aggregate is one pass of a builtin over a list, so this costs far less per tick than
    the same grouping in SQL. Rows come sorted by (symbol, minute): one lock order everywhere.
    """
    cols: list[list] = [[] for _ in range(12)]
    (symbols, buckets, opens, open_tss, highs, lows, closes, close_tss, counts, volumes, psums,
     pvs) = cols
    for symbol in sorted(batch):
        ticks = batch[symbol]
        if not ticks:
            continue
        _, _, prices, tss, vols = zip(*ticks)
        open_ts, close_ts = min(tss), max(tss)
        bucket = bucket_of(open_ts)
        if bucket == bucket_of(close_ts):  # the common case: one minute
            groups = [(bucket, prices, tss, vols, open_ts, close_ts)]
        else:
            parts: dict[int, list[Tick]] = {}
            for t in ticks:
                b = bucket_of(t[3])
                part = parts.get(b)
                if part is None:
                    parts[b] = [t]
                else:
                    part.append(t)
            groups = []
            for b in sorted(parts):
                _, _, prices, tss, vols = zip(*parts[b])
                groups.append((b, prices, tss, vols, min(tss), max(tss)))
        for bucket, prices, tss, vols, open_ts, close_ts in groups:
            symbols.append(symbol)
            buckets.append(bucket)
            opens.append(prices[tss.index(open_ts)])  # the first applied at the earliest time
            open_tss.append(open_ts)
            highs.append(max(prices))
            lows.append(min(prices))
            closes.append(prices[len(tss) - 1 - tss[::-1].index(close_ts)])  # the last applied at the latest
            close_tss.append(close_ts)
            counts.append(len(tss))
            volumes.append(sum(vols))
            psums.append(sum(prices))
            pvs.append(sum(map(mul, prices, vols)))
    return cols


async def _aio_init_connection(con: asyncpg.Connection) -> None:
    """Per pooled connection: the staging table, emptied by every commit."""
    await con.execute(STAGING)


async def _aio_load_book(con: asyncpg.Connection, symbol: str, lateness: float) -> BookSeed:
    max_ts = await con.fetchval("SELECT ts FROM ticks_raw WHERE symbol = $1 ORDER BY ts DESC, seq DESC LIMIT 1",
                                symbol)
    if max_ts is None:
        return BookSeed([], [], None)
    floor = max_ts - lateness
    keys = await con.fetch("SELECT idempotency_key, ts FROM ticks_raw WHERE symbol = $1 AND ts >= $2", symbol, floor)
    floor_bucket = bucket_of(floor)
    changeable = await con.fetch(BARS_SINCE, symbol, floor_bucket)
    before = await con.fetch(BARS, symbol, float(floor_bucket), SMA_N - 1)
    bars = [_bar(r) for r in reversed(before)] + [_bar(r) for r in changeable]
    return BookSeed(bars, [(k, ts) for k, ts in keys], max_ts)

