"""PostgresStore: the durable Store, asyncpg through trio-asyncio at this one boundary.

Every database operation is one complete asyncio coroutine (``_pg_write``) called from trio with
``aio_as_trio``. A flush is one transaction: the fast path (binary COPY straight into the
partitioned ``ticks_raw``) or, when a tick of the batch is already stored, the exact path (a
staging table, ``ON CONFLICT DO NOTHING``); either merges the 1m candles and the rollups in the
same transaction. See docs/ARCHITECTURE.md, "Storage" (both paths, partitions, retention, costs).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence

import asyncpg
import numpy as np
import structlog
import trio
from trio_asyncio import aio_as_trio

from candlewick.errors import StoreUnavailable
from candlewick.schema import Bar, SymbolInfo, Tick, TickColumns
from candlewick.storage import _pg_write as aio
from candlewick.storage._pg_columns import BUCKET, INTERVAL_OFFSETS, Flush, columns_of
from candlewick.storage._pg_migrate import MIGRATION_LOCK, RAW_WIDTH, apply, raw_table, table_1m
from candlewick.storage._pg_partitions import PartitionedTable, maintain
from candlewick.storage._pg_sql import (BARS, LATEST, NEXT_SEQ_BLOCK, OUTBOX_DELETE, OUTBOX_PENDING, ROLLUPS, SEQ_BLOCK,
                                        SYMBOL_IDS, TICKS_PAGE, int_bound)
from candlewick.storage._protocol import BookSeed, Cursor, RawTick

__all__ = ["EXACT_AFTER_DUPLICATE", "INTERVAL_OFFSETS", "MIGRATION_LOCK", "UNAVAILABLE", "PostgresStore", "migrate"]

log = structlog.get_logger("candlewick.postgres")

EXACT_AFTER_DUPLICATE = 8
"""Flushes that go straight to the exact path after one held an already-stored key: when
duplicates keep reaching the store (several processes fed the same ticks), at most one fast
attempt in nine is wasted on a rollback."""
DROP_GRACE = 60.0
"""Seconds past its retention before a partition is dropped: a writer whose clock is a little
behind still finds the partition its oldest kept ticks go to."""

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
            return await apply(con)
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
                 connect_timeout: float = 5.0, retention_raw: float | None = None,
                 retention_1m: float | None = None, partition_raw: int = RAW_WIDTH) -> None:
        """``retention_raw``/``retention_1m``: seconds raw ticks and 1m candles are kept (None: for
        ever); ``partition_raw``: seconds each new raw partition spans."""
        self.dsn = dsn
        self.pool_size = pool_size
        self.command_timeout = command_timeout
        self.connect_timeout = connect_timeout
        self.retention_raw = retention_raw
        self.retention_1m = retention_1m
        self._raw: PartitionedTable = raw_table(partition_raw)
        self._1m: PartitionedTable = table_1m()
        self._pool: asyncpg.Pool | None = None
        self._migrated = False
        self._migrate_lock = trio.Lock()
        self._ids: dict[str, int] = {}
        """Symbol -> its id in ``symbols`` (ids are never reused)."""
        self._seq_lock = trio.Lock()
        self._seq_next = self._seq_end = 0
        self.fast_writes = 0
        """Flushes committed by the fast path (COPY straight into ticks_raw)."""
        self.exact_writes = 0
        """Flushes committed by the exact path (the batch held an already-stored tick, or came
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
                                                 max_inactive_connection_lifetime=60, init=aio.init_connection)
            self._pool = await aio_as_trio(create)()
        if not self._migrated:
            async with self._migrate_lock:
                if not self._migrated:
                    pool = self._pool

                    async def run() -> list[int]:
                        async with pool.acquire() as con:
                            applied = await apply(con)
                            await self._maintain(con, time.time())
                            return applied
                    applied = await aio_as_trio(run)()
                    if applied:
                        log.info("migrations_applied", versions=applied)
                    self._migrated = True
        return self._pool

    async def connect(self) -> None:
        """Connect, migrate and run the maintenance step now, not at first use; ``StoreUnavailable`` if the
        database cannot serve."""
        await self.call(aio.fetchval, "SELECT 1")

    async def call(self, fn, *args):
        """Run one complete asyncio coroutine ``fn(connection, *args)`` on a pooled connection (the
        first call connects and migrates).

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
                return await self.call(aio.fetchval, "SELECT 1") == 1
        except (Exception, trio.TooSlowError):  # noqa: BLE001 - readiness reports, never raises
            return False

    # -- partitions and retention ----------------------------------------------------------------
    async def _maintain(self, con: asyncpg.Connection, now: float) -> list[str]:
        raw_cut = now - self.retention_raw - DROP_GRACE if self.retention_raw else None
        cut_1m = now - self.retention_1m - DROP_GRACE if self.retention_1m else None
        dropped = await maintain(con, [(self._raw, raw_cut), (self._1m, cut_1m)], now)
        if dropped:
            log.info("partitions_dropped", partitions=dropped)
        return dropped

    async def prune(self, now: float) -> None:
        """The maintenance step: partitions made ahead of time, those past retention dropped whole."""
        try:
            await self.call(self._maintain, now)
        except StoreUnavailable:
            pass  # the outage is logged once by call; the next maintenance step tries again
        except Exception as exc:  # noqa: BLE001 - retried at the next prune; never stops the engine
            log.warning("partition_maintenance_failed", error=_cause(exc))

    async def make_partitions(self, flush: Flush, *, reload: bool = False) -> None:
        """Make sure the partitions the flush writes to exist (normally made ahead of time); ``reload``:
        ask the database again, for one dropped or made by another process meanwhile."""
        raw = flush.cols.ts[flush.raw]
        minutes = np.floor(flush.cols.ts / BUCKET) * BUCKET
        minutes = minutes[minutes >= flush.floor_1m]
        for table, values in ((self._raw, raw), (self._1m, minutes)):
            if reload or len(table.missing(values)):
                await self.call(table.create, values)

    # -- writes ---------------------------------------------------------------------------------
    async def write(self, batch: Mapping[str, Sequence[Tick]], outbox: bytes | None = None) -> int | None:
        """Commit a flush: ``TickColumns``, or per-symbol lists of ticks in applied order. With
        ``outbox`` (the flush's events as bus rows, JSON), the same transaction stores them in
        ``sse_outbox``; returns that row's id (else None)."""
        cols = columns_of(batch)
        if not len(cols):
            return None
        flush = await self.flush_of(cols)
        try:
            return await self._write(flush, outbox)
        except asyncpg.CheckViolationError:  # a partition dropped or not made yet: make it, once
            await self.make_partitions(flush, reload=True)
            return await self._write(flush, outbox)

    async def _write(self, flush: Flush, outbox: bytes | None) -> int | None:
        if self._exact_next:  # duplicates reached the store lately: skip the attempt doomed to roll back
            self._exact_next -= 1
            _, row = await self.call(aio.write, flush, None, outbox)
            self.exact_writes += 1
            return row
        fast, row = await self.call(aio.write, flush, flush.bars().copy_rows(), outbox)
        if fast:
            self.fast_writes += 1
        else:
            self.exact_writes += 1
            self._exact_next = EXACT_AFTER_DUPLICATE
        return row

    async def flush_of(self, cols: TickColumns) -> Flush:
        """The flush that writes ``cols``: symbol ids, arrival numbers, the retention floors of now, and
        the partitions it writes to made (``candlewick import`` writes each chunk as one)."""
        now = time.time()
        raw_floor = now - self.retention_raw if self.retention_raw else -math.inf
        floor_1m = now - self.retention_1m if self.retention_1m else -math.inf
        ids = await self._symbol_ids(cols.symbols, np.unique(cols.sym).tolist())
        flush = Flush(cols, ids, await self._seqs(len(cols)), raw_floor, floor_1m)
        await self.make_partitions(flush)
        return flush

    async def _symbol_ids(self, symbols: list[str], used: list[int]) -> np.ndarray:
        ids = self._ids
        missing = [symbols[i] for i in used if symbols[i] not in ids]
        for _ in range(3):
            if not missing:
                break
            for name, id_ in await self.call(aio.fetch, SYMBOL_IDS, missing):
                ids[name] = id_
            missing = [s for s in missing if s not in ids]
        if missing:
            raise RuntimeError(f"no id for symbols {missing[:3]}")
        return np.array([ids.get(s, -1) for s in symbols], dtype=np.int32)

    async def _seqs(self, n: int) -> np.ndarray:
        """``n`` arrival numbers, increasing, from blocks of the sequence (one round trip a block)."""
        async with self._seq_lock:
            parts = []
            while n:
                if self._seq_next == self._seq_end:
                    start = await self.call(aio.fetchval, NEXT_SEQ_BLOCK)
                    self._seq_next, self._seq_end = start, start + SEQ_BLOCK
                k = min(n, self._seq_end - self._seq_next)
                parts.append(np.arange(self._seq_next, self._seq_next + k, dtype=np.int64))
                self._seq_next += k
                n -= k
            return np.concatenate(parts)

    async def outbox_pending(self, older_than: float, limit: int = 64) -> list[tuple[int, bytes]]:
        """Outbox rows at least ``older_than`` seconds old (by the database's clock), oldest first."""
        rows = await self.call(aio.fetch, OUTBOX_PENDING, float(older_than), limit)
        return [(r[0], bytes(r[1])) for r in rows]

    async def outbox_delete(self, ids: Sequence[int]) -> None:
        if ids:
            await self.call(aio.execute, OUTBOX_DELETE, list(ids))

    async def upsert_symbols(self, items: Sequence[SymbolInfo]) -> int:
        rows = {s.symbol: s for s in items}  # one statement must not hold the same key twice
        await self.call(_upsert_symbols, [(s.symbol, s.base, s.quote, s.active) for s in rows.values()])
        return len(items)

    # -- reads: each one bounded ------------------------------------------------------------------
    async def symbols(self, active_only: bool, limit: int, after: str | None = None) -> list[SymbolInfo]:
        # the primary key's order (COLLATE "C": bytewise), walked from ``after``
        sql = "SELECT symbol, base, quote, active FROM symbols WHERE symbol > $1" + \
              (" AND active" if active_only else "") + " ORDER BY symbol LIMIT $2"
        rows = await self.call(aio.fetch, sql, after or "", max(limit, 0))
        return [SymbolInfo(*r) for r in rows]

    async def latest(self, symbol: str) -> RawTick | None:
        rows = await self.call(aio.fetch, LATEST, symbol)
        return RawTick(symbol, *rows[0]) if rows else None

    async def ticks_page(self, symbol: str, before: Cursor | None, limit: int) -> tuple[list[RawTick], Cursor | None]:
        ts, seq = before if before is not None else (math.inf, 2 ** 63 - 1)
        rows = await self.call(aio.fetch, TICKS_PAGE, symbol, float(ts), seq, limit + 1)
        items = [RawTick(symbol, *r) for r in rows[:limit]]
        nxt = (items[-1].ts, items[-1].seq) if len(rows) > limit else None
        return items, nxt

    async def bars_before(self, symbol: str, before: float, limit: int) -> list[Bar]:
        rows = await self.call(aio.fetch, BARS, symbol, int_bound(before), limit)
        return [aio.bar_of(r) for r in rows]

    async def candles(self, symbol: str, interval: int, before: float, limit: int) -> list[Bar]:
        if interval not in INTERVAL_OFFSETS:
            raise ValueError(f"no candles of {interval} seconds")
        if limit <= 0:
            return []
        if interval == BUCKET:
            return await self.bars_before(symbol, before, limit)
        rows = await self.call(aio.fetch, ROLLUPS, symbol, interval, int_bound(before), limit)
        return [aio.bar_of(r) for r in rows]

    async def window(self, symbol: str, since: float, until: float) -> Bar | None:
        return await self.call(aio.window, symbol, since, until)

    async def load_book(self, symbol: str, lateness: float) -> BookSeed:
        return await self.call(aio.load_book, symbol, lateness)


async def _upsert_symbols(con: asyncpg.Connection, rows: list[tuple]) -> None:
    await con.executemany("INSERT INTO symbols (symbol, base, quote, active) VALUES ($1, $2, $3, $4) "
                          "ON CONFLICT (symbol) DO UPDATE SET base = excluded.base, quote = excluded.quote, "
                          "active = excluded.active", rows)
