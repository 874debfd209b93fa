"""The Postgres store's asyncio side: each function is one complete operation on one connection.

A flush is one transaction, by the fast path (binary COPY straight into ``ticks_raw``) or the exact
path (COPY into a staging table, ``INSERT ... ON CONFLICT DO NOTHING``); both end with the merge of
the candles and the outbox row. See docs/ARCHITECTURE.md, "Storage".
"""

from __future__ import annotations

import asyncio

import asyncpg
import numpy as np

from candlewick.domain import SMA_N, bucket_of
from candlewick.schema import Bar
from candlewick.storage._pg_columns import BAR_COLUMNS, RAW_COLUMNS, Flush
from candlewick.storage._pg_sql import (BARS, BARS_SINCE, BOOK_KEYS, INSERT_NEW, LATEST, NEWEST_1M, STAGING, UPSERT,
                                        WINDOW_1M, WINDOW_RAW)
from candlewick.storage._protocol import BookSeed


def bar_of(row) -> Bar:
    bar = Bar.__new__(Bar)
    (bar.bucket, bar.open, bar.open_ts, bar.high, bar.low, bar.close, bar.close_ts, bar.count, bar.volume,
     bar.pv, bar.psum) = row
    return bar


async def fetch(con: asyncpg.Connection, sql: str, *args):
    return await con.fetch(sql, *args)


async def execute(con: asyncpg.Connection, sql: str, *args):
    return await con.execute(sql, *args)


async def fetchval(con: asyncpg.Connection, sql: str, *args):
    return await con.fetchval(sql, *args)


async def fetchrow(con: asyncpg.Connection, sql: str, *args):
    return await con.fetchrow(sql, *args)


async def init_connection(con: asyncpg.Connection) -> None:
    """Per pooled connection: the staging tables, emptied by every commit."""
    await con.execute(STAGING)


async def write(con: asyncpg.Connection, flush: Flush, bars: memoryview | None,
                outbox: bytes | None = None) -> tuple[bool, int | None]:
    """One flush, one transaction. Fast path (``bars`` given: the merge rows of every tick): COPY
    the raw rows straight into ``ticks_raw``, then merge. The primary key makes that exact: if a
    tick is already stored (same symbol, trade time and key) the COPY fails, the transaction rolls
    back whole, and the exact path writes the batch. Returns (True if the fast path committed, the
    outbox row's id)."""
    if bars is not None:

        async def fast() -> int | None:
            if len(flush.raw):
                await con.copy_to_table("ticks_raw", source=flush.raw_rows(), columns=RAW_COLUMNS, format="binary")
            return await _merge(con, bars, outbox)
        try:
            return True, await in_transaction(con, fast)
        except asyncpg.UniqueViolationError:
            pass

    async def exact() -> int | None:
        inserted = np.zeros(0, dtype=np.int64)
        if len(flush.raw):
            await con.copy_to_table("staging_ticks", source=flush.raw_rows(), columns=RAW_COLUMNS, format="binary")
            inserted = np.array([r[0] for r in await con.fetch(INSERT_NEW)], dtype=np.int64)
        new = flush.aggregated_only | np.isin(flush.seq, inserted)
        return await _merge(con, flush.bars(new).copy_rows() if new.any() else None, outbox)
    return False, await in_transaction(con, exact)


async def _merge(con: asyncpg.Connection, bars: memoryview | None, outbox: bytes | None) -> int | None:
    if bars is not None:
        await con.copy_to_table("staging_bars", source=bars, columns=BAR_COLUMNS, format="binary")
    elif outbox is None:
        return None
    return await con.fetchval(UPSERT, outbox)


async def in_transaction(con: asyncpg.Connection, work):
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


async def load_book(con: asyncpg.Connection, symbol: str, lateness: float) -> BookSeed:
    """The keys (16-byte digests) and trade times of the lateness horizon, the 1m bars it may still
    change and the 9 before it (SMA10 context)."""
    latest = await con.fetchrow(LATEST, symbol)
    max_ts = latest[1] if latest is not None else await con.fetchval(NEWEST_1M, symbol)
    if max_ts is None:
        return BookSeed([], [], None)
    floor = max_ts - lateness
    keys = await con.fetch(BOOK_KEYS, symbol, floor)
    floor_bucket = bucket_of(floor)
    changeable = await con.fetch(BARS_SINCE, symbol, floor_bucket)
    before = await con.fetch(BARS, symbol, floor_bucket, SMA_N - 1)
    bars = [bar_of(r) for r in reversed(before)] + [bar_of(r) for r in changeable]
    return BookSeed(bars, [(bytes(k), ts) for k, ts in keys], max_ts)


async def window(con: asyncpg.Connection, symbol: str, since: float, until: float) -> Bar | None:
    """One bar of the ticks with since <= ts < until: whole minutes from ``ohlc_1m``, the partial
    minutes at either end from raw ticks. At most a day of minute rows and two minutes of ticks."""
    first = -(-since // 60) * 60
    last = until // 60 * 60
    if first < last:
        parts = [(WINDOW_RAW, since, first), (WINDOW_1M, int(first), int(last)), (WINDOW_RAW, last, until)]
    else:
        parts = [(WINDOW_RAW, since, until)]
    out: Bar | None = None
    for sql, lo, hi in parts:
        row = await con.fetchrow(sql, symbol, lo, hi)
        if not row[6]:
            continue
        bar = bar_of((int(since), *row))
        if out is None:
            out = bar
        else:
            out.merge(bar)
    return out
