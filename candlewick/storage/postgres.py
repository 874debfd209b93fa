"""PostgresStore: the durable Store, asyncpg through trio-asyncio at this one boundary.

Every database operation is one complete asyncio coroutine called from trio with ``aio_as_trio``.
A flush is one transaction: the fast path (COPY straight into ``ticks_raw``) or, when a key of the
batch is already stored, the exact path (a staging table, ``ON CONFLICT DO NOTHING``); the SQL is
in ``_pg_sql``. See docs/ARCHITECTURE.md, "Storage" (both paths, what each costs, migrations).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from itertools import chain

import asyncpg
import structlog
import trio
from trio_asyncio import aio_as_trio

from candlewick.domain import SMA_N, bucket_of
from candlewick.errors import StoreUnavailable
from candlewick.schema import Bar, SymbolInfo, Tick
from candlewick.storage._pg_sql import (BARS, BARS_SINCE, CANDLES_1M, FLUSH, INTERVAL_OFFSETS, MERGE, OUTBOX_DELETE, OUTBOX_INSERT, OUTBOX_PENDING,
                                        STAGING, STAGING_COLUMNS, TICK_COLUMNS, bucket_bound, merge_rows,
                                        migrations)
from candlewick.storage._protocol import BookSeed, Cursor, RawTick

log = structlog.get_logger("candlewick.postgres")

MIGRATION_LOCK = 0x63616E64  # "cand"


EXACT_AFTER_DUPLICATE = 8
"""Flushes that go straight to the exact path after one held an already-stored key: when
duplicates keep reaching the store (several processes fed the same ticks), at most one fast
attempt in nine is wasted on a rollback."""


def _bar(row) -> Bar:
    bar = Bar.__new__(Bar)
    (bar.bucket, bar.open, bar.open_ts, bar.high, bar.low, bar.close, bar.close_ts, bar.count, bar.volume,
     bar.pv, bar.psum) = row
    return bar


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


UNAVAILABLE = (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
               asyncpg.exceptions.InvalidCatalogNameError, asyncpg.exceptions.InvalidAuthorizationSpecificationError,
               asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.InsufficientResourcesError)
"""What a database that cannot serve raises: unreachable or down (connection errors, 57P shutdowns),
no such database (3D000), credentials or role refused (28000, 28P01), out of connections (53300)."""


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def migrate(dsn: str) -> list[int]:
    """``candlewick migrate``: apply pending migrations (runs inside trio-asyncio).

    A database that cannot be reached or that refuses the connection (no such database, wrong port,
    bad credentials), or a migration the database rejects, raises ``StoreUnavailable`` saying why.
    """

    async def run() -> list[int]:
        con = await asyncpg.connect(dsn, timeout=10)
        try:
            return await _aio_migrate(con)
        finally:
            await con.close()

    try:
        return await aio_as_trio(run)()
    except (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresError) as exc:
        raise StoreUnavailable(_cause(exc)) from exc


class PostgresStore:
    name = "postgres"
    durable = True

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
        self._outage: str | None = None
        """Why the database is unavailable, as last logged (None while it answers): each cause is
        logged once, not once per request."""

    # -- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        try:
            await self._ready()
        except Exception as exc:  # noqa: BLE001 - a database that is down at start is retried later
            self._outage = _cause(exc)
            log.error("database_unavailable", error=self._outage)

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

        A database that cannot serve (down, missing, refusing the credentials, shutting down, out
        of connections) is ``StoreUnavailable`` (503 with Retry-After), never a 500; the cause is
        logged when it first appears, and the recovery once.
        """
        try:
            pool = await self._ready()

            async def run():
                async with pool.acquire() as con:
                    return await fn(con, *args)
            result = await aio_as_trio(run)()
        except UNAVAILABLE as exc:
            cause = _cause(exc)
            if cause != self._outage:
                self._outage = cause
                log.error("database_unavailable", error=cause)
            raise StoreUnavailable(f"the database is unavailable ({type(exc).__name__}); retry later") from exc
        if self._outage is not None:
            self._outage = None
            log.info("database_available")
        return result

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

    async def candles(self, symbol: str, interval: int, before: float, limit: int) -> list[Bar]:
        if interval not in INTERVAL_OFFSETS:
            raise ValueError(f"no candles of {interval} seconds")
        if limit <= 0:
            return []
        rows = await self._call(_aio_fetch, CANDLES_1M, symbol, interval, INTERVAL_OFFSETS[interval],
                                bucket_bound(before, interval), limit)
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

        async def fast() -> int | None:
            await con.copy_records_to_table("ticks_raw", records=map(_text_key, chain.from_iterable(batch.values())),
                                            columns=TICK_COLUMNS)
            await con.execute(MERGE, *merge)
            return await con.fetchval(OUTBOX_INSERT, outbox) if outbox is not None else None
        try:
            return True, await _in_transaction(con, fast)
        except asyncpg.UniqueViolationError:
            pass

    async def exact() -> int | None:
        records = [(i, *_text_key(t)) for i, t in enumerate(chain.from_iterable(batch.values()))]
        await con.copy_records_to_table("staging_ticks", records=records, columns=STAGING_COLUMNS)
        await con.fetchval(FLUSH)
        return await con.fetchval(OUTBOX_INSERT, outbox) if outbox is not None else None
    return False, await _in_transaction(con, exact)


async def _in_transaction(con: asyncpg.Connection, work):
    """``await work()`` in one transaction: rolled back if it raises (or is cancelled), else
    committed with ``_commit``. Returns what ``work`` returned."""
    tr = con.transaction()
    await tr.start()
    try:
        result = await work()
    except BaseException:
        await tr.rollback()
        raise
    await _commit(tr)
    return result


async def _commit(tr) -> None:
    """COMMIT, seen through once sent. A cancellation (the flusher's deadline) that arrives while
    the server commits would otherwise report a stored flush as failed: its requests answered 503
    although their ticks are kept. So the outcome of the COMMIT decides: it raises only if the
    commit failed. Cancelled before COMMIT, the transaction rolls back as usual."""
    commit = asyncio.ensure_future(tr.commit())
    try:
        await asyncio.shield(commit)
    except asyncio.CancelledError:
        if commit.cancelled():
            raise
        await commit  # trio-asyncio waits for this task's own result, so the write returns normally


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
    return BookSeed(bars, [(_key_of_text(k), ts) for k, ts in keys], max_ts)


def _text_key(tick: Tick) -> Tick:
    """Schema v2 keeps keys as text: a digest (the decoder's 16 bytes) goes in as its 32 hex digits."""
    key = tick[0]
    return tick._replace(key=key.hex()) if type(key) is bytes else tick


def _key_of_text(key: str) -> bytes | str:
    """The inverse of ``_text_key``: 32 hex digits are a digest."""
    if len(key) == 32:
        try:
            return bytes.fromhex(key)
        except ValueError:
            pass
    return key

