"""The database side of ``candlewick import``: the store's own flush, plus a ledger row, in one transaction a chunk.

Imported only by the command (it brings asyncpg and trio-asyncio, as ``postgres`` does). A chunk
is written as a live flush is (``PostgresStore``: raw rows within raw retention, deduped by
(symbol, trade time, key digest); 1-minute candles within 1m retention; every rollup), inside an
outer transaction that first moves the file's ledger row from the rows done before the chunk to
the rows done after it. So a chunk is applied exactly when its ledger step is committed, and a
resumed, repeated or concurrent import of the same file never applies it twice: the ledger step
of a chunk already done finds the row moved and the transaction rolls back. See
docs/ARCHITECTURE.md, "Backfill".
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

LEDGER = """CREATE TABLE IF NOT EXISTS import_ledger (
    identity       bytea PRIMARY KEY,            -- XXH3-128 of the file's bytes
    file_name      text NOT NULL,
    source         text NOT NULL,                -- the source of the default keys, kept for a resume
    rows_total     bigint NOT NULL,
    rows_done      bigint NOT NULL DEFAULT 0,    -- rows of the file applied, from its start
    rows_raw       bigint NOT NULL DEFAULT 0,    -- of those, offered as raw ticks (within raw retention)
    rows_old       bigint NOT NULL DEFAULT 0,    -- older than raw retention: candles only
    rows_live      bigint NOT NULL DEFAULT 0,    -- newer than now - lateness: posted to the server
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
)"""
LEDGER_ROW = "SELECT rows_done, rows_total, finished_at IS NOT NULL, source FROM import_ledger WHERE identity = $1"
LEDGER_BEGIN = """INSERT INTO import_ledger (identity, file_name, source, rows_total) VALUES ($1, $2, $3, $4)
ON CONFLICT (identity) DO NOTHING"""
# A chunk's step: only from the row count the chunk starts at; "UPDATE 0" means another import
# of the same file moved it (or the chunk is done already), and the chunk's transaction rolls back.
LEDGER_STEP = """UPDATE import_ledger SET rows_done = $3, rows_raw = rows_raw + $4, rows_old = rows_old + $5,
    rows_live = rows_live + $6, updated_at = now()
WHERE identity = $1 AND rows_done = $2 AND finished_at IS NULL"""
LEDGER_FINISH = """UPDATE import_ledger SET finished_at = now(), updated_at = now() WHERE identity = $1
RETURNING rows_raw, rows_old, rows_live"""


ATTEMPTS = 3
"""Tries of a chunk whose transaction the database rolled back for a reason that may pass (a deadlock,
a partition that went missing)."""


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@attrs.frozen
class LedgerEntry:
    rows_done: int
    rows_total: int
    finished: bool
    source: str


class LedgerMoved(Exception):
    """A chunk's ledger step found the file's row elsewhere: another import of the same file is running."""


class ImportTarget:
    """The database an import writes to: a ``PostgresStore`` with the server's retention, whose own flush
    machinery (symbol ids, arrival numbers, partitions, the fast and exact write paths) writes each chunk."""

    def __init__(self, dsn: str, *, retention_raw: float | None, retention_1m: float | None,
                 partition_raw: int) -> None:
        self.dsn = dsn
        self.retention = (retention_raw, retention_1m)
        # No retention while the store opens: its first use runs the maintenance step, and dropping
        # partitions is the server's business (an import run with other settings must not drop any).
        self.store = PostgresStore(dsn, pool_size=3, command_timeout=600.0, partition_raw=partition_raw)

    async def open(self) -> None:
        """Migrate and make the ledger; ``StoreUnavailable`` saying why if the database cannot serve."""
        await migrate(self.dsn)
        await self.store._call(_execute, LEDGER)
        # Opened (maintained once, nothing dropped): from now on the retention only decides what is
        # stored raw and which minutes get a 1m row, as in the server's flushes.
        self.store.retention_raw, self.store.retention_1m = self.retention

    async def close(self) -> None:
        await self.store.close()

    async def ledger(self, identity: bytes) -> LedgerEntry | None:
        row = await self.store._call(_fetchrow, LEDGER_ROW, identity)
        return LedgerEntry(*row) if row is not None else None

    async def begin(self, identity: bytes, name: str, source: str, rows_total: int) -> LedgerEntry:
        """The file's ledger row, made now (or by an import of the same file meanwhile)."""
        await self.store._call(_execute, LEDGER_BEGIN, identity, name, source, rows_total)
        entry = await self.ledger(identity)
        if entry is None:
            raise StoreUnavailable("the ledger row just made is not there")
        return entry

    async def flush(self, cols: TickColumns) -> Flush:
        """The chunk as the store writes a flush: symbol ids, arrival numbers, the partitions it needs made."""
        return await self.store._flush(cols)

    @staticmethod
    def prepare(flush: Flush) -> bytes:
        """The CPU of a chunk's write, done ahead (in a worker thread, while the previous chunk commits):
        its merge rows, returned for ``apply``, and its raw COPY rows, which the store's write asks the
        flush for inside the transaction; the flush hands back these bytes then."""
        raw = flush.raw_rows()
        flush.raw_rows = lambda: raw  # shadows the method on this one object: made once, off the event loop
        return flush.bars().copy_rows()

    async def apply(self, identity: bytes, flush: Flush | None, bars: bytes | None, rows_before: int,
                    rows_after: int, live: int) -> None:
        """Commit the chunk (``bars``: ``flush.bars().copy_rows()``; no flush when every row went to the
        server) with its ledger step; ``LedgerMoved`` (nothing applied) if the step cannot be made."""
        counts = (0, 0, live) if flush is None else \
            (int(len(flush.raw)), int(np.count_nonzero(flush.aggregated_only)), live)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self.store._call(_chunk, flush, bars, identity, rows_before, rows_after, counts)
                return
            except asyncpg.CheckViolationError as exc:  # a partition dropped or not made yet: make it
                if flush is None or attempt == ATTEMPTS:
                    raise StoreUnavailable(_cause(exc)) from exc
                await self.store._partitions_for(flush, reload=True)
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:  # rolled back: again
                if attempt == ATTEMPTS:
                    raise StoreUnavailable(_cause(exc)) from exc
            except asyncpg.PostgresError as exc:  # anything else the database refused: reported, not a traceback
                raise StoreUnavailable(_cause(exc)) from exc

    async def finish(self, identity: bytes) -> dict[str, int]:
        row = await self.store._call(_fetchrow, LEDGER_FINISH, identity)
        return {"raw_rows": row[0], "candle_only_rows": row[1], "live_rows": row[2]} if row is not None else {}


# -- the asyncio side: each function is one complete operation on one connection ------------------------
async def _execute(con: asyncpg.Connection, sql: str, *args):
    return await con.execute(sql, *args)


async def _fetchrow(con: asyncpg.Connection, sql: str, *args):
    return await con.fetchrow(sql, *args)


async def _chunk(con: asyncpg.Connection, flush: Flush | None, bars: bytes | None, identity: bytes, before: int,
                 after: int, counts: tuple[int, int, int]) -> None:
    """One transaction: the ledger step, then the flush as the store writes it (its own transaction
    nests as a savepoint, so its fast path may fail and give way to the exact path inside this one)."""

    async def work() -> None:
        if await con.execute(LEDGER_STEP, identity, before, after, *counts) != "UPDATE 1":
            raise LedgerMoved(f"the ledger of this file is no longer at row {before}")
        if flush is not None:
            await aio.write(con, flush, bars)

    await aio.in_transaction(con, work)
