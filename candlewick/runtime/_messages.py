"""Messages between the actors: a dispatcher pass for the flusher, barriers, and the symbols' epochs.

The hot-path one, ``FlushItem``, is a plain slotted class, not ``attrs``: see docs/ARCHITECTURE.md,
"Actors and their interface" (messages).
"""

from __future__ import annotations

from collections import Counter

import attrs
import trio

from candlewick.domain import Event, Work
from candlewick.errors import CandlewickError
from candlewick.schema import Tick


class FlushItem:
    """Dispatcher -> flusher: what one pass of a lane's dispatcher applied, for many symbols.

    The flusher screens it (``screen``), writes ``writes``, then ``commit``s (tickets resolved,
    ``events`` published) or ``drop``s it (tickets failed, actors rebuild).
    """

    __slots__ = ("writes", "epochs", "parts", "events", "tickets", "version", "n")

    def __init__(self, writes: dict[str, list[Tick]], epochs: dict[str, int], parts: dict[str, list[Work]],
                 events: list[Event], tickets: Counter, version: int, n: int) -> None:
        self.writes = writes
        """symbol -> new ticks in applied order: what the store must commit (symbols with any)."""
        self.epochs = epochs
        """symbol -> its epoch when applied, for every symbol in the item; stale ones are dropped."""
        self.parts = parts
        """symbol -> the mailbox parts applied, whose tickets wait on this item."""
        self.events = events
        """Realtime events for the new ticks, published only after the commit."""
        self.tickets = tickets
        """ticket -> how many of its parts this item holds (None counts parts nobody waits on)."""
        self.version = version
        """``Epochs.version`` when applied: unchanged at the flusher means no epoch moved since."""
        self.n = n
        """How many new ticks ``writes`` holds."""

    def screen(self, epochs: Epochs, error: CandlewickError) -> int:
        """Drop, unwritten, the symbols whose epoch moved since they were applied and the symbols
        holding a part of an expired request; return how many new ticks went with them."""
        expired = [t for t in self.tickets if t is not None and t.expired]
        if epochs.version == self.version and not expired:
            return 0
        get = epochs.get
        doomed = {s for s, e in self.epochs.items() if e != get(s, 0)}
        if expired:
            gone = set(expired)
            doomed.update(s for s, parts in self.parts.items() if any(w[1] in gone for w in parts))
        return self._drop_symbols(doomed, epochs, error)

    def claim(self) -> None:
        """The write of this item begins: its requests now wait for its outcome."""
        for ticket in self.tickets:
            if ticket is not None:
                ticket.committing = True

    def commit(self) -> None:
        for ticket, parts in self.tickets.items():
            if ticket is not None:
                ticket.resolve(parts)

    def drop(self, epochs: Epochs, error: CandlewickError) -> int:
        """Forget the whole item unwritten: its requests fail, its actors rebuild."""
        return self._drop_symbols(set(self.epochs), epochs, error)

    def _drop_symbols(self, symbols: set[str], epochs: Epochs, error: CandlewickError) -> int:
        dropped = 0
        tickets = self.tickets
        for symbol in symbols:
            epochs.bump(symbol)
            dropped += len(self.writes.pop(symbol, ()))
            del self.epochs[symbol]
            for _, ticket in self.parts.pop(symbol):
                if ticket is not None:
                    ticket.fail(error)
                    tickets[ticket] -= 1
                    if not tickets[ticket]:
                        del tickets[ticket]
        if symbols and dropped:
            self.events = [e for e in self.events if e.tick.symbol not in symbols]
        self.n -= dropped
        return dropped


class Epochs(dict):
    """symbol -> epoch. The flusher bumps a symbol's epoch when it drops work the actor had
    applied (store outage, expired request); the actor then rebuilds its book from the store."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 0
        """Bumps so far, all symbols: lets a flusher skip per-symbol checks while nothing moved."""

    def bump(self, symbol: str) -> None:
        self[symbol] = self.get(symbol, 0) + 1
        self.version += 1


@attrs.frozen
class Barrier:
    """Symbol actor -> flusher (through its dispatcher, in order with the items): set
    ``reached`` once everything sent before is committed or dropped."""

    reached: trio.Event
