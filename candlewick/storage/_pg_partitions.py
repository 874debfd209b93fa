"""Time partitions of ``ticks_raw`` and ``ohlc_1m``: which exist, which to create, which retention drops.

Native declarative range partitions, no extension. A partition is made as a plain table and then
attached (``ATTACH PARTITION`` takes only a SHARE UPDATE EXCLUSIVE lock on the parent, so writers
and readers go on), and dropped after ``DETACH PARTITION ... CONCURRENTLY`` (same lock). See
docs/ARCHITECTURE.md, "Storage".
"""

from __future__ import annotations

import re
import time
from bisect import bisect_right

import asyncpg
import numpy as np

CREATE_LOCK = 0x63617274  # "cart": one process at a time creates partitions
DROP_LOCK = 0x63617275  # one process at a time drops them
DDL_TIMEOUT = 600.0
"""Seconds a partition statement may take (a concurrent detach waits for older transactions)."""

_BOUND = re.compile(r"FROM \('?(-?[0-9.e+]+)'?\) TO \('?(-?[0-9.e+]+)'?\)")


class PartitionedTable:
    """One partitioned table: its name, partition key, default width, and the partitions known."""

    def __init__(self, name: str, column: str, width: int, fillfactor: int = 100) -> None:
        self.name = name
        self.column = column
        self.width = width
        """Seconds each new partition spans (aligned to multiples of it)."""
        self.fillfactor = fillfactor
        self.known: list[tuple[float, float, str]] = []
        """(from, to, name) of the partitions, sorted, as last read from the catalog."""

    # -- plain arithmetic ------------------------------------------------------------------------------
    def covered(self, values: np.ndarray) -> np.ndarray:
        """Which ``values`` fall in a known partition."""
        if not self.known:
            return np.zeros(len(values), dtype=bool)
        lows = np.array([lo for lo, _, _ in self.known])
        highs = np.array([hi for _, hi, _ in self.known])
        i = np.searchsorted(lows, values, side="right") - 1
        return (i >= 0) & (values < highs[np.maximum(i, 0)])

    def missing(self, values: np.ndarray) -> list[tuple[float, float]]:
        """The ranges to create so that every one of ``values`` has a partition: each value's
        aligned slot of ``width`` seconds, less what known partitions already cover."""
        outside = values[~self.covered(values)]
        if not len(outside):
            return []
        out = []
        for slot in np.unique(np.floor(outside / self.width)).tolist():
            out += self.gaps(slot * self.width, (slot + 1) * self.width)
        return out

    def gaps(self, lo: float, hi: float) -> list[tuple[float, float]]:
        """The parts of [lo, hi) that no known partition covers."""
        out = []
        i = max(bisect_right(self.known, (lo, float("inf"), "")) - 1, 0)
        for plo, phi, _ in self.known[i:]:
            if plo >= hi:
                break
            if phi <= lo:
                continue
            if plo > lo:
                out.append((lo, plo))
            lo = max(lo, phi)
        if lo < hi:
            out.append((lo, hi))
        return out

    def expired(self, cutoff: float) -> list[str]:
        """Partitions whose every value is older than ``cutoff``."""
        return [name for _, hi, name in self.known if hi <= cutoff]

    def partition_name(self, lo: float) -> str:
        return f"{self.name}_{time.strftime('%Y%m%d_%H%M%S', time.gmtime(lo))}"

    # -- the database ----------------------------------------------------------------------------------
    async def load(self, con: asyncpg.Connection) -> list[str]:
        """Read the partitions from the catalog; returns those left half-detached (to drop)."""
        rows = await con.fetch("""SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), i.inhdetachpending
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass""", self.name)
        known, pending = [], []
        for name, bound, detaching in rows:
            m = _BOUND.search(bound or "")
            if detaching:
                pending.append(name)
            elif m:
                known.append((float(m.group(1)), float(m.group(2)), name))
        self.known = sorted(known)
        return pending

    async def create(self, con: asyncpg.Connection, values: np.ndarray) -> int:
        """Create the partitions ``values`` need, in one transaction under ``CREATE_LOCK``
        (another process may be creating the same ones). Returns how many were made."""
        made = 0
        async with con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock($1)", CREATE_LOCK)
            await self.load(con)
            for lo, hi in self.missing(values):
                name = self.partition_name(lo)
                await con.execute(f"CREATE TABLE {name} (LIKE {self.name} INCLUDING DEFAULTS) "
                                  f"WITH (fillfactor = {self.fillfactor})", timeout=DDL_TIMEOUT)
                await con.execute(f"ALTER TABLE {self.name} ATTACH PARTITION {name} "
                                  f"FOR VALUES FROM ({_literal(lo)}) TO ({_literal(hi)})", timeout=DDL_TIMEOUT)
                made += 1
            await self.load(con)
        return made

    async def drop(self, con: asyncpg.Connection, name: str, *, pending: bool = False) -> None:
        """Detach (concurrently: writers are not blocked) and drop one partition. Outside any
        transaction; the caller holds ``DROP_LOCK``."""
        how = "FINALIZE" if pending else "CONCURRENTLY"
        await con.execute(f"ALTER TABLE {self.name} DETACH PARTITION {name} {how}", timeout=DDL_TIMEOUT)
        await con.execute(f"DROP TABLE {name}", timeout=DDL_TIMEOUT)


def _literal(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


async def maintain(con: asyncpg.Connection, tables: list[tuple[PartitionedTable, float | None]], now: float,
                   ahead: int = 2) -> list[str]:
    """The maintenance step (at open and every prune): create each table's partitions from the
    current one to ``ahead`` widths ahead of ``now``, and drop those wholly older than its cutoff
    (None keeps everything). One process at a time drops; returns the partitions dropped."""
    for table, _ in tables:
        await table.load(con)
        want = np.array([now + k * table.width for k in range(-1, ahead + 1)], dtype=np.float64)
        if len(table.missing(want)):
            await table.create(con, want)
    dropped: list[str] = []
    if not await con.fetchval("SELECT pg_try_advisory_lock($1)", DROP_LOCK):
        return dropped
    try:
        for table, cutoff in tables:
            for name in await table.load(con):
                await table.drop(con, name, pending=True)
                dropped.append(name)
            if cutoff is None:
                continue
            for name in table.expired(cutoff):
                await table.drop(con, name)
                dropped.append(name)
            await table.load(con)
    finally:
        await con.execute("SELECT pg_advisory_unlock($1)", DROP_LOCK)
    return dropped
