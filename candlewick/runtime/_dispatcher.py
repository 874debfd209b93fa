"""Dispatcher: applies the mail of every ready symbol actor of one flusher lane, one pass at a time.

State it owns: its lane's send end, the ready list of its actors and the barriers asked for. Reads
the actors' mailboxes only through ``SymbolActor.take``/``apply``/``crashed``/``done_with_mail``;
writes one ``FlushItem`` per pass, then the barriers, to its lane. Restart policy: none of its own;
a crash inside an actor's apply is that actor's (``crashed``), anything else escalates to the engine
(one-for-all). See docs/ARCHITECTURE.md, "Actors and their interface".
"""

from __future__ import annotations

from collections import Counter
from itertools import chain
from operator import itemgetter

import trio

from candlewick.domain import Event, Ticket, Work, count_rejected, drop_expired
from candlewick.errors import StoreUnavailable
from candlewick.runtime._actor import SymbolActor
from candlewick.runtime._messages import Barrier, Epochs, FlushItem

PASS_MAX_TICKS = 20_000
"""A pass stops taking actors past this many ticks, so one pass never holds the trio loop for
long (the rest waits for the next pass)."""

_ticket_of = itemgetter(1)
_ticks_of = itemgetter(0)


class Dispatcher:
    """Runs the apply step of the symbol actors of one flusher lane and feeds that lane.

    Each pass applies every ready actor's mailbox and sends one ``FlushItem`` (then any barriers
    asked for meanwhile, so a barrier always follows everything applied before it was asked for).
    Ends once closed and every actor of the lane has stopped.
    """

    def __init__(self, lane: trio.MemorySendChannel[FlushItem | Barrier], epochs: Epochs) -> None:
        self.lane = lane
        self.epochs = epochs
        self.passes = 0
        """Passes that sent an item, all told."""
        self._ready: list[SymbolActor] = []
        self._barriers: list[Barrier] = []
        self._live = 0
        """Actor tasks of this lane still running."""
        self._closing = False
        self._lot = trio.lowlevel.ParkingLot()
        self._expirations = Ticket.expirations

    # -- what actors and the router call ------------------------------------------------------
    def enqueue(self, actor: SymbolActor) -> None:
        self._ready.append(actor)

    def schedule(self, actor: SymbolActor) -> None:
        self._ready.append(actor)
        self.wake()

    def barrier(self, barrier: Barrier) -> None:
        self._barriers.append(barrier)
        self.wake()

    def wake(self) -> None:
        if self._lot:
            self._lot.unpark_all()

    def wake_if_ready(self) -> None:
        if self._ready:
            self.wake()

    def adopt(self) -> None:
        """An actor task of this lane has started."""
        self._live += 1

    def release(self) -> None:
        """An actor task of this lane has ended for good."""
        self._live -= 1
        self.wake()

    def close(self) -> None:
        """End once every actor of the lane has stopped (each drains its mailbox first)."""
        self._closing = True
        self.wake()

    # -- the task -----------------------------------------------------------------------------
    async def run(self) -> None:
        lane = self.lane
        while True:
            if not self._ready and not self._barriers:
                if self._closing and self._live == 0:
                    return
                await self._lot.park()
                continue
            item = self._pass() if self._ready else None
            if item is not None:
                try:  # no scheduling round trip while the lane has room (the common case)
                    lane.send_nowait(item)
                except trio.WouldBlock:
                    await lane.send(item)
            if self._barriers:
                barriers, self._barriers = self._barriers, []
                for barrier in barriers:
                    await lane.send(barrier)
            elif self._ready:  # a capped pass left work: let others run before the next one
                await trio.lowlevel.checkpoint()

    def _pass(self) -> FlushItem | None:
        ready = self._ready
        version = self.epochs.version
        check_expiry = Ticket.expirations != self._expirations
        self._expirations = Ticket.expirations
        writes: dict[str, list] = {}
        epochs: dict[str, int] = {}
        parts: dict[str, list[Work]] = {}
        events: list[Event] = []
        taken: list[Work] = []
        closing = self._closing
        n = ticks_taken = 0
        for index, actor in enumerate(ready):
            if ticks_taken >= PASS_MAX_TICKS:
                self._ready = ready[index:]
                break
            mail = actor.take(version)
            if mail is None:
                continue
            if check_expiry:
                mail = drop_expired(mail, StoreUnavailable("expired"))
                if not mail:
                    continue
            ticks = mail[0][0] if len(mail) == 1 else list(chain.from_iterable(map(_ticks_of, mail)))
            try:
                applied = actor.apply(ticks)
            except Exception as exc:  # noqa: BLE001 - the actor's crash: its work in hand fails, it restarts
                actor.crashed(exc, mail)
                continue
            ticks_taken += len(ticks)
            if applied.duplicates or applied.skipped:
                count_rejected(mail, applied)
            new = applied.new
            symbol = actor.symbol
            if new:
                writes[symbol] = new
                events += applied.events
                n += len(new)
            epochs[symbol] = actor.epoch
            parts[symbol] = mail
            taken += mail
            if closing:
                actor.done_with_mail()
        else:
            self._ready = []
        if not epochs:
            return None
        self.passes += 1
        return FlushItem(writes, epochs, parts, events, Counter(map(_ticket_of, taken)), version, n)
