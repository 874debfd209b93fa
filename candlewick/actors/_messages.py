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

    __slots__ = ("parts", "accepted", "duplicates", "skipped", "error", "done", "_on_done")

    def __init__(self, parts: int, on_done: Callable[[], None] | None = None) -> None:
        self.parts = parts
        self.accepted = self.duplicates = self.skipped = 0
        self.error: CandlewickError | None = None
        self.done = trio.Event()
        self._on_done = on_done

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
    ticks: list[Tick]
    """New ticks in applied order: what the store must commit."""
    events: list[tuple]
    """Realtime events for these ticks, published only after the commit."""
    tickets: list[tuple[Ticket, int]]
    """(ticket, how many of ``ticks`` belong to it): marked committed after the write."""


@attrs.frozen
class Barrier:
    """Symbol actor -> flusher: set ``reached`` once everything sent before is committed."""

    reached: trio.Event
