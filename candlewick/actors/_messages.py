"""Messages between actors (frozen) and the ticket a request waits on."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from candlewick.errors import CandlewickError
from candlewick.schema import Receipt, Tick


class Ticket:
    """One request's completion: counts from each symbol part, done when every part committed.

    Not a message but a shared rendezvous: the router creates it, symbol actors add their
    duplicate/skipped counts, the flusher marks parts committed or failed.
    """

    __slots__ = ("parts", "accepted", "duplicates", "skipped", "error", "done", "expired", "committing", "_on_done")

    def __init__(self, parts: int, on_done: Callable[[], None] | None = None) -> None:
        self.parts = parts
        self.accepted = self.duplicates = self.skipped = 0
        self.error: CandlewickError | None = None
        self.done = trio.Event()
        self.expired = False
        """The request gave up waiting (503): no part of it may be applied or written any more."""
        self.committing = False
        """The flusher has begun writing a part: the request must wait for the outcome."""
        self._on_done = on_done

    def try_expire(self) -> bool:
        """Give up on this ticket unless a write of it is under way; True if it is now expired."""
        if not self.committing and not self.done.is_set():
            self.expired = True
        return self.expired

    def part_committed(self, accepted: int) -> None:
        self.accepted += accepted
        self.parts -= 1
        if self.parts == 0:
            self._finish()

    def fail(self, error: CandlewickError) -> None:
        if self.error is None:
            self.error = error
        self.parts -= 1
        if self.parts == 0:
            self._finish()

    def _finish(self) -> None:
        if self._on_done is not None:
            self._on_done()
        self.done.set()

    def receipt(self) -> Receipt:
        return Receipt(self.accepted, self.duplicates, self.skipped)


@attrs.frozen
class Work:
    """Router -> symbol actor: one request's ticks of this symbol, in arrival order."""

    ticks: list[Tick]
    ticket: Ticket | None
    """None for ticks nobody waits on (the built-in feeder does wait; kept for tools)."""


@attrs.frozen
class FlushItem:
    """Symbol actor -> flusher: what one actor wake-up applied."""

    symbol: str
    epoch: int
    """The symbol's epoch when the actor applied this; stale items are dropped, not written."""
    ticks: list[Tick]
    """New ticks in applied order: what the store must commit."""
    events: list[tuple]
    """Realtime events for these ticks, published only after the commit."""
    tickets: list[tuple[Ticket, int]]
    """(ticket, how many of ``ticks`` belong to it): marked committed after the write."""


class Epochs(dict):
    """symbol -> epoch. The flusher bumps a symbol's epoch when it drops work the actor had
    applied (store outage, expired request); the actor then rebuilds its book from the store."""

    def bump(self, symbol: str) -> None:
        self[symbol] = self.get(symbol, 0) + 1


@attrs.frozen
class Barrier:
    """Symbol actor -> flusher: set ``reached`` once everything sent before is committed."""

    reached: trio.Event
