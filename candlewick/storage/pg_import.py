"""The database side of ``candlewick import``: the store's own flush, plus a claim in a ledger, one transaction a chunk.

Imported only by the command (it brings asyncpg and trio-asyncio, as ``postgres`` does). A chunk
is written as a live flush is (``PostgresStore``: raw rows within raw retention, deduped by
(symbol, trade time, key digest); 1-minute candles within 1m retention; every rollup), inside an
outer transaction whose first statement claims the chunk in the ledger (``import_chunks``, one
row per chunk of a file, the file known by a hash of its content; migration 004 makes both tables).
So a chunk is applied exactly when its claim is committed: a resumed, repeated or concurrent import of the same file finds the
claim taken (at once, or once the transaction holding it commits) and skips the chunk, and chunks
may be committed in any order, several at a time. See docs/ARCHITECTURE.md, "Backfill".
"""

from __future__ import annotations

import asyncpg
import attrs
import numpy as np

from candlewick.errors import StoreUnavailable
from candlewick.schema import TickColumns
from candlewick.storage import _pg_write as aio
from candlewick.storage._pg_columns import Flush
from candlewick.storage.postgres import PostgresStore, migrate

FILE_ROW = "SELECT rows_total, batch, source, finished_at IS NOT NULL FROM import_files WHERE identity = $1"
FILE_BEGIN = """INSERT INTO import_files (identity, file_name, source, batch, rows_total) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (identity) DO NOTHING"""
CHUNKS_DONE = "SELECT chunk, rows FROM import_chunks WHERE identity = $1"
CLAIM = """INSERT INTO import_chunks (identity, chunk, rows, rows_raw, rows_old, rows_live)
VALUES ($1, $2, $3, $4, $5, $6)"""
FINISH = """UPDATE import_files SET finished_at = now() WHERE identity = $1"""
TOTALS = """SELECT coalesce(sum(rows_raw), 0), coalesce(sum(rows_old), 0), coalesce(sum(rows_live), 0)
FROM import_chunks WHERE identity = $1"""

ATTEMPTS = 3
"""Tries of a chunk whose transaction the database rolled back for a reason that may pass (a deadlock,
a partition that went missing)."""


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@attrs.frozen
class LedgerEntry:
    """A file in the ledger: its rows, its chunking and source, and the chunks done (chunk -> rows)."""

    rows_total: int
    batch: int
    source: str
    finished: bool
    done: dict[int, int]

    @property
    def rows_done(self) -> int:
        return sum(self.done.values())


class ImportTarget:
    """The database an import writes to: a ``PostgresStore`` with the server's retention, whose own flush
    machinery (symbol ids, arrival numbers, partitions, the fast and exact write paths) writes each chunk."""

    def __init__(self, dsn: str, *, retention_raw: float | None, retention_1m: float | None,
                 partition_raw: int, connections: int = 2) -> None:
        self.dsn = dsn
        self.retention = (retention_raw, retention_1m)
        # No retention while the store opens: its first use runs the maintenance step, and dropping
        # partitions is the server's business (an import run with other settings must not drop any).
        self.store = PostgresStore(dsn, pool_size=connections + 2, command_timeout=600.0, partition_raw=partition_raw)

    async def open(self) -> None:
        """Migrate (the ledger is part of the schema, v4); ``StoreUnavailable`` saying why if the database
        cannot serve."""
        await migrate(self.dsn)
        await self.store.connect()  # its maintenance step, without retention
        # Opened (maintained once, nothing dropped): from now on the retention only decides what is
        # stored raw and which minutes get a 1m row, as in the server's flushes.
        self.store.retention_raw, self.store.retention_1m = self.retention

    async def close(self) -> None:
        await self.store.close()

    async def ledger(self, identity: bytes) -> LedgerEntry | None:
        row = await self.store.call(aio.fetchrow, FILE_ROW, identity)
        if row is None:
            return None
        done = await self.store.call(aio.fetch, CHUNKS_DONE, identity)
        return LedgerEntry(row[0], row[1], row[2], row[3], {chunk: rows for chunk, rows in done})

    async def begin(self, identity: bytes, name: str, source: str, batch: int, rows_total: int) -> LedgerEntry:
        """The file's ledger row, made now (or by an import of the same file meanwhile)."""
        await self.store.call(aio.execute, FILE_BEGIN, identity, name, source, batch, rows_total)
        entry = await self.ledger(identity)
        if entry is None:
            raise StoreUnavailable("the ledger row just made is not there")
        return entry

    async def flush(self, cols: TickColumns) -> Flush:
        """The chunk as the store writes a flush: symbol ids, arrival numbers, the partitions it needs made."""
        return await self.store.flush_of(cols)

    @staticmethod
    def prepare(flush: Flush) -> bytes:
        """The CPU of a chunk's write, done ahead (in a worker thread, while other chunks commit): its
        merge rows, returned for ``apply``, and its raw COPY rows, which the flush keeps for the write."""
        flush.raw_rows()
        return flush.bars().copy_rows()

    async def apply(self, identity: bytes, chunk: int, rows: int, flush: Flush | None, bars: bytes | None,
                    live: int) -> bool:
        """Claim chunk ``chunk`` (``rows`` rows) and commit it (``bars``: ``prepare(flush)``; no flush when
        every row went to the server). False if it was claimed before (by this file's import earlier, or
        by another one now): nothing applied."""
        claim = (identity, chunk, rows, 0, 0, live) if flush is None else \
            (identity, chunk, rows, int(len(flush.raw)), int(np.count_nonzero(flush.aggregated_only)), live)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self.store.call(_chunk, flush, bars, claim)
            except asyncpg.CheckViolationError as exc:  # a partition dropped or not made yet: make it
                if flush is None or attempt == ATTEMPTS:
                    raise StoreUnavailable(_cause(exc)) from exc
                await self.store.make_partitions(flush, reload=True)
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:  # rolled back: again
                if attempt == ATTEMPTS:
                    raise StoreUnavailable(_cause(exc)) from exc
            except asyncpg.PostgresError as exc:  # anything else the database refused: reported, not a traceback
                raise StoreUnavailable(_cause(exc)) from exc
        raise AssertionError("unreachable")

    async def finish(self, identity: bytes) -> dict[str, int]:
        """Mark the file done; what its chunks stored, summed."""
        await self.store.call(aio.execute, FINISH, identity)
        raw, old, live = await self.store.call(aio.fetchrow, TOTALS, identity)
        return {"raw_rows": raw, "candle_only_rows": old, "live_rows": live}


# -- the asyncio side: each function is one complete operation on one connection ------------------------
class _Claimed(Exception):
    """The chunk's claim is taken: it was applied before."""


async def _chunk(con: asyncpg.Connection, flush: Flush | None, bars: bytes | None, claim: tuple) -> bool:
    """One transaction: the claim, then the flush as the store writes it (its own transaction nests as a
    savepoint, so its fast path may fail and give way to the exact path inside this one)."""

    async def work() -> None:
        try:
            await con.execute(CLAIM, *claim)
        except asyncpg.UniqueViolationError:
            raise _Claimed from None
        if flush is not None:
            await aio.write(con, flush, bars)

    try:
        await aio.in_transaction(con, work)
    except _Claimed:
        return False
    return True
