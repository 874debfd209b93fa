"""The Store protocol: everything the engine and the HTTP layer ask of storage, and its records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs

from candlewick.schema import Bar, SymbolInfo, Tick

Cursor = tuple[float, int]
"""A position in a symbol's raw ticks: (trade time, arrival sequence); walks are exclusive."""


@attrs.frozen
class RawTick:
    symbol: str
    price: float
    ts: float
    volume: float
    seq: int


@attrs.frozen
class BookSeed:
    """What a (re)starting symbol actor needs to rebuild its book."""

    bars: list[Bar]
    keys: list[tuple[str, float]]
    max_ts: float | None


class Store(Protocol):
    """What the engine and the HTTP layer need from storage. Implemented by ``MemoryStore`` and
    ``PostgresStore``; ``tests/unit/test_store_contract.py`` holds both to the same contract."""

    name: str
    """What the supervision tree and the logs call it: ``memory`` or ``postgres``."""
    durable: bool
    """Commits outlive the process, and the store is a server that can be down: readiness checks
    it, the flusher writes in two lanes (overlapping round trips), and with Redis each flush's
    events are also written in its transaction (the SSE outbox)."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def check(self) -> bool:
        """True when the store answers now (readiness)."""
        ...
    async def write(self, batch: Mapping[str, Sequence[Tick]], outbox: bytes | None = None) -> int | None:
        """Commit new ticks (already deduped by the actors) and merge them into the bars. With
        ``outbox`` (a flush's events, encoded), store it in the same transaction and return the
        id of its outbox row; else return None."""
        ...
    async def outbox_pending(self, older_than: float, limit: int = 64) -> list[tuple[int, bytes]]:
        """Outbox rows written at least ``older_than`` seconds ago, oldest first: (id, events)."""
        ...
    async def outbox_delete(self, ids: Sequence[int]) -> None:
        """Forget outbox rows that have been published."""
        ...
    async def prune(self, now: float) -> None:
        """Apply retention."""
        ...
    async def upsert_symbols(self, items: Sequence[SymbolInfo]) -> int: ...
    async def symbols(self, active_only: bool, limit: int, after: str | None = None) -> list[SymbolInfo]:
        """Up to ``limit`` symbols ordered by name (bytewise), those after ``after`` only (exclusive).
        One bounded read: O(limit) rows and objects."""
        ...
    async def latest(self, symbol: str) -> RawTick | None: ...
    async def ticks_page(self, symbol: str, before: Cursor | None, limit: int) -> tuple[list[RawTick], Cursor | None]:
        """Raw ticks newest first strictly before ``before``, and the cursor of the next page."""
        ...
    async def bars_before(self, symbol: str, before: float, limit: int) -> list[Bar]:
        """Up to ``limit`` 1m bars with bucket < ``before``, newest first."""
        ...
    async def candles(self, symbol: str, interval: int, before: float, limit: int) -> list[Bar]:
        """Up to ``limit`` bars of ``interval`` seconds (a value of ``domain.INTERVALS``), with
        bucket < ``before``, newest first. One bounded read: O(limit) rows and objects."""
        ...
    async def window(self, symbol: str, since: float, until: float) -> Bar | None:
        """One bar aggregating the raw ticks with since <= ts < until."""
        ...
    async def load_book(self, symbol: str, lateness: float) -> BookSeed: ...
