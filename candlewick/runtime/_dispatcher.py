"""Dispatcher: one flusher lane's symbol actors as rows; applies their waiting work, one pass at a time.

State it owns: its lane's send end, the rows of its actors (modes, mailbox depths, epochs:
``RowTable``), their books (``BookTable``), the request parts waiting (and those held for actors
that are rebuilding) and the barriers asked for. Each pass takes the waiting parts, applies every
running actor's ticks in one call, and writes one ``FlushItem`` (then the barriers) to its lane.
Restart policy: none of its own; a fault inside one actor's work is that actor's crash (it restarts
one-for-one), anything else escalates to the engine. See docs/ARCHITECTURE.md, "Actors as rows".
"""

from __future__ import annotations

from collections import deque

import numpy as np
import trio

from candlewick.domain import CRASHED, DUPLICATE, SKIPPED, BookTable, Ticket, apply_isolated
from candlewick.errors import StoreUnavailable
from candlewick.runtime._messages import Barrier, Epochs, FlushItem
from candlewick.runtime._rows import RUNNING, STARTING, UNAVAILABLE, Part, RowActor, RowTable

PASS_MAX_TICKS = 20_000
"""A pass stops taking parts past this many ticks, so one pass never holds the trio loop for long
(the rest waits for the next pass)."""

_EXPIRED = StoreUnavailable("expired")


class Dispatcher:
    """Runs the apply step of the symbol actors of one flusher lane and feeds that lane.

    Ends once closed and every actor of the lane has stopped.
    """

    def __init__(self, lane: trio.MemorySendChannel[FlushItem | Barrier], epochs: Epochs, *,
                 lateness: float = 3600.0, max_keys: int = 100_000) -> None:
        self.lane = lane
        self.epochs = epochs
        self.passes = 0
        """Passes that sent an item, all told."""
        self.rows = RowTable()
        self.books = BookTable(lateness=lateness, max_keys=max_keys)
        """The books of all the lane's actors, one row each (the same rows as ``rows``)."""
        self.actors: list[RowActor] = []
        self.symbols: list[str] = self.books.symbols
        """row -> symbol."""
        self._pending: deque[Part] = deque()
        self._held: list[Part] = []
        self._unheld = False
        """Some actor left STARTING with work waiting: the held parts go back before the next pass."""
        """Parts (or the part of a part) of actors that are rebuilding: back to ``_pending`` when
        an actor's mode changes."""
        self._barriers: list[Barrier] = []
        self._live = 0
        """Actor tasks of this lane still running."""
        self._closing = False
        self._lot = trio.lowlevel.ParkingLot()
        self._room = trio.Event()
        self._expirations = Ticket.expirations
        self._version = -1

    # -- rows -----------------------------------------------------------------------------------
    def add(self, actor: RowActor) -> int:
        """Give a new actor its row."""
        row = self.rows.add()
        if self.books.add(actor.symbol) != row:
            raise RuntimeError("the row table and the book table disagree")
        self.actors.append(actor)
        return row

    def seed(self, row: int, seed, epoch: int) -> None:
        """The actor has (re)built its book: it runs from now on."""
        self.books.seed(row, seed)
        self.rows.epoch[row] = epoch
        self.set_mode(row, RUNNING)

    def set_mode(self, row: int, mode: int) -> None:
        self.rows.mode[row] = mode
        if mode != STARTING and self.rows.depth[row]:
            self._unheld = True  # the next pass looks at the held parts again (once, however many rows changed)
            self.wake()

    def depth(self, row: int) -> int:
        return int(self.rows.depth[row])

    # -- what the router calls ------------------------------------------------------------------
    def has_room(self, urows: np.ndarray, capacity: int) -> bool:
        return self.rows.has_room(urows, capacity)

    async def wait_room(self, urows: np.ndarray, capacity: int) -> None:
        """Wait until every one of these rows' mailboxes has room; ``ClosedResourceError`` once closing."""
        while not self.rows.has_room(urows, capacity):
            if self._closing:
                raise trio.ClosedResourceError("the lane is stopping")
            self.wake()
            await self._room.wait()
        if self._closing:
            raise trio.ClosedResourceError("the lane is stopping")

    def post(self, part: Part) -> None:
        """Append one request's part (the caller made room); the caller wakes the dispatchers."""
        self.rows.post(part.urows)
        self._pending.append(part)

    # -- what actors call -------------------------------------------------------------------------
    def barrier(self, barrier: Barrier) -> None:
        self._barriers.append(barrier)
        self.wake()

    def wake(self) -> None:
        if self._lot:
            self._lot.unpark_all()

    def wake_if_ready(self) -> None:
        if self._pending:
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
        self._free_room()
        self.wake()

    # -- the task ---------------------------------------------------------------------------------
    async def run(self) -> None:
        lane = self.lane
        while True:
            if not self._pending and not self._barriers and not self._unheld:
                if self._closing and self._live == 0:
                    return
                await self._lot.park()
                continue
            item = self._pass() if self._pending or self._unheld else None
            if item is not None:
                try:  # no scheduling round trip while the lane has room (the common case)
                    lane.send_nowait(item)
                except trio.WouldBlock:
                    await lane.send(item)
            if self._barriers:
                barriers, self._barriers = self._barriers, []
                for barrier in barriers:
                    await lane.send(barrier)
            elif self._pending:  # a capped pass left work: let others run before the next one
                await trio.lowlevel.checkpoint()

    def _free_room(self) -> None:
        self._room.set()
        self._room = trio.Event()

    def _take(self) -> list[Part]:
        """The waiting parts, up to ``PASS_MAX_TICKS`` ticks, minus those of expired requests."""
        pending, rows = self._pending, self.rows
        check_expiry = Ticket.expirations != self._expirations
        self._expirations = Ticket.expirations
        parts: list[Part] = []
        n = 0
        while pending and n < PASS_MAX_TICKS:
            part = pending.popleft()
            ticket = part.ticket
            if check_expiry and ticket is not None and ticket.expired:
                ticket.fail(_EXPIRED, len(part.urows))  # answered 503 already: never applied
                rows.taken(part.urows)
                continue
            parts.append(part)
            n += len(part)
        return parts

    def _check_epochs(self) -> None:
        """Some epoch moved since the last look: running actors whose epoch moved rebuild first."""
        epochs, symbols, rows = self.epochs, self.symbols, self.rows
        for row in np.flatnonzero(rows.mode[:rows.n] == RUNNING).tolist():
            if rows.epoch[row] != epochs.get(symbols[row], 0):
                rows.mode[row] = STARTING
                self.actors[row].rebuild()

    def _sort(self, parts: list[Part]) -> list[Part]:
        """Answer the parts of refusing actors, hold those of rebuilding ones; the running rest."""
        rows = self.rows
        mode = rows.mode
        running: list[Part] = []
        for part in parts:
            um = mode[part.urows]
            if not um.any():  # every actor of the part runs (RUNNING is 0): the common case
                rows.taken(part.urows)
                running.append(part)
                continue
            m = mode[part.rows]
            ticket = part.ticket
            if ticket is not None:
                for row in part.urows[um >= UNAVAILABLE].tolist():
                    ticket.fail(self.actors[row].refusal)
            rows.taken(part.urows[um != STARTING])
            if (um == STARTING).any():
                self._held.append(Part(*_columns(part, m == STARTING), ticket, part.urows[um == STARTING]))
            if (um == RUNNING).any():
                running.append(Part(*_columns(part, m == RUNNING), ticket, part.urows[um == RUNNING]))
        return running

    def _pass(self) -> FlushItem | None:
        if self._unheld:
            self._unheld = False
            held, self._held = self._held, []
            self._pending.extendleft(reversed(held))
        version = self.epochs.version
        parts = self._take()
        if version != self._version:
            self._check_epochs()
            self._version = version
        running = self._sort(parts) if parts else parts
        if parts:
            self._free_room()
        if self._closing:
            for actor in self.actors:
                actor.done_with_mail()
        if not running:
            return None
        one = len(running) == 1
        cols = _columns(running[0]) if one else [np.concatenate(c) for c in zip(*map(_columns, running), strict=True)]
        lengths = np.fromiter(map(len, running), dtype=np.intp, count=len(running))
        part_of = np.repeat(np.arange(len(running)), lengths)
        outcome = apply_isolated(self.books, *cols)
        status = outcome.status
        tickets = [p.ticket for p in running]
        for code, field in ((DUPLICATE, "duplicates"), (SKIPPED, "skipped")):
            hits = status == code
            if hits.any():
                for i, count in enumerate(np.bincount(part_of[hits], minlength=len(running)).tolist()):
                    ticket = tickets[i]
                    if count and ticket is not None:
                        setattr(ticket, field, getattr(ticket, field) + count)
        share_rows = [p.urows for p in running]
        if outcome.crashed:
            crashed = np.fromiter(outcome.crashed, dtype=np.int32)
            for row, exc in outcome.crashed.items():
                in_hand = [p.ticket for p in running if row in p.urows]
                self.rows.mode[row] = STARTING
                self.actors[row].crashed(exc, in_hand)
            share_rows = [u[~np.isin(u, crashed)] for u in share_rows]
            assert not (status[outcome.new] == CRASHED).any()
        new = outcome.new
        self.passes += 1
        return FlushItem(self, [c[new] for c in cols], outcome, part_of[new], tickets, share_rows, version)


def _columns(part: Part, mask: np.ndarray | None = None) -> tuple:
    if mask is None:
        return part.rows, part.price, part.ts, part.volume, part.digest
    return part.rows[mask], part.price[mask], part.ts[mask], part.volume[mask], part.digest[mask]
