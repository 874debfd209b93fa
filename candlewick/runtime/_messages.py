"""Messages between actors and the ticket a request waits on.

Hot-path messages are plain tuples or slotted classes rather than ``attrs`` classes: one of them
is made per symbol per request (``Work``) or per dispatcher pass (``FlushItem``), and at 10,000
symbols their construction cost is a visible share of the per-tick budget.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TypeAlias

import attrs
import trio

from candlewick.errors import CandlewickError
from candlewick.schema import Receipt, Tick


class Ticket:
    """One request's completion: done when every symbol part of it is committed (or failed).

    Not a message but a shared rendezvous: the router creates it, the dispatcher adds the
    duplicate/skipped counts, the flusher marks parts committed or failed. ``accepted`` is what is
    left of the request's ticks once duplicates and skipped ones are taken away.
    """

    __slots__ = ("ticks", "parts", "total_parts", "duplicates", "skipped", "error", "done", "expired", "committing",
                 "_failed_parts", "_on_done")

    expirations = 0
    """How many tickets ever expired (all routers): a dispatcher that saw the same number last
    time need not look at each part's ticket."""

    def __init__(self, ticks: int, parts: int, on_done: Callable[[], None] | None = None) -> None:
        self.ticks = ticks
        self.parts = self.total_parts = parts
        """Symbol parts not yet committed or failed."""
        self.duplicates = self.skipped = self._failed_parts = 0
        self.error: CandlewickError | None = None
        self.done = trio.Event()
        self.expired = False
        """The request gave up waiting (503): no part of it may be applied or written any more."""
        self.committing = False
        """The flusher has begun writing a part: the request must wait for the outcome."""
        self._on_done = on_done

    @property
    def accepted(self) -> int:
        return self.ticks - self.duplicates - self.skipped

    def try_expire(self) -> bool:
        """Give up on this ticket unless a write of it is under way; True if it is now expired."""
        if not self.committing and not self.done.is_set() and not self.expired:
            self.expired = True
            Ticket.expirations += 1
        return self.expired

    def resolve(self, parts: int) -> None:
        """``parts`` of the request's symbol parts are committed."""
        self.parts -= parts
        if self.parts == 0:
            self._finish()

    def fail(self, error: CandlewickError, parts: int = 1) -> None:
        if self.error is None:
            self.error = error
        self._failed_parts += parts
        self.parts -= parts
        if self.parts == 0:
            self._finish()

    def _finish(self) -> None:
        if self.error is not None and self.committed_parts:
            self.error = self._partly_committed(self.error)
        if self._on_done is not None:
            self._on_done()
        self.done.set()

    @property
    def committed_parts(self) -> int:
        """Symbol parts committed, when done: a failed request may have some (parts of different
        symbols are separate writes)."""
        return self.total_parts - self.parts - self._failed_parts

    def _partly_committed(self, error: CandlewickError) -> CandlewickError:
        """The same refusal (code, status, Retry-After), saying what was committed: a client must
        not believe that nothing of the request was applied. Its retry is still right: the
        committed ticks come back as duplicates, the rest is applied."""
        n, total = self.committed_parts, self.total_parts
        message = (f"{error} [part of this request was committed before the failure: {n} of its {total} "
                   "symbols. Retry the whole request: ticks already committed come back as duplicates, "
                   "the rest are applied]")
        partly = type(error).__new__(type(error))
        partly.__dict__.update(error.__dict__)
        Exception.__init__(partly, message)
        return partly

    def receipt(self) -> Receipt:
        return Receipt(self.accepted, self.duplicates, self.skipped)


Work: TypeAlias = tuple[list[Tick], "Ticket | None"]
"""Router -> symbol actor's mailbox: one request's ticks of this symbol, in arrival order, and the
request's ticket (None for ticks nobody waits on). A plain tuple: one is made per symbol per request."""


class FlushItem:
    """Dispatcher -> flusher: what one pass of a lane's dispatcher applied, for many symbols.

    The flusher screens it (``screen``), writes ``writes``, then ``commit``s (tickets resolved,
    ``events`` published) or ``drop``s it (tickets failed, actors rebuild).
    """

    __slots__ = ("writes", "epochs", "parts", "events", "tickets", "version", "n")

    def __init__(self, writes: dict[str, list[Tick]], epochs: dict[str, int], parts: dict[str, list[Work]],
                 events: list[tuple], tickets: Counter, version: int, n: int) -> None:
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
            self.events = [e for e in self.events if e[0].symbol not in symbols]
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
