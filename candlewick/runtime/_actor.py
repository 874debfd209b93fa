"""SymbolActor: one symbol's identity, bounded mailbox, supervised life and book (dedupe, bars, SMA10).

State it owns, in private fields: the sans-IO ``SymbolBook``, its epoch, its mode and its mailbox
(a bounded list of ``Work`` that outlives restarts). The router posts to it (``has_room``,
``wait_room``, ``post``); its lane's dispatcher takes the mail, applies it and reports a crash
(``take``, ``apply``, ``crashed``). Its task rebuilds the book from the store at start, after a
crash and when its epoch moved. Restart policy: one-for-one under ``supervise``; past the intensity
the actor is failed and refuses everything with 503 SYMBOL_FAILED. See docs/ARCHITECTURE.md,
"Actors and their interface" and "Restart rules".
"""

from __future__ import annotations

from typing import Protocol

import attrs
import structlog
import trio

from candlewick.config import Config
from candlewick.domain import Applied, SymbolBook, Ticket, Work
from candlewick.errors import ActorCrashed, StoreUnavailable, SymbolFailed, Unavailable
from candlewick.runtime._messages import Barrier, Epochs
from candlewick.runtime._supervisor import ChildState
from candlewick.schema import Tick
from candlewick.storage import Store

log = structlog.get_logger("candlewick.actor")

STARTING, RUNNING, UNAVAILABLE, FAILED = "starting", "running", "unavailable", "failed"
"""Actor modes: only RUNNING applies; STARTING keeps its mail waiting (rebuilding); UNAVAILABLE
(store unreadable, between rebuild attempts) and FAILED answer it at once with their refusal."""


class Scheduler(Protocol):
    """What an actor needs of its lane's dispatcher."""

    def schedule(self, actor: SymbolActor) -> None:
        """Put the actor in the next pass and wake the dispatcher."""

    def enqueue(self, actor: SymbolActor) -> None:
        """Put the actor in the next pass; the caller wakes the dispatcher once for many."""

    def barrier(self, barrier: Barrier) -> None:
        """Send ``barrier`` down the lane after everything applied so far."""


@attrs.frozen
class ActorStatistics:
    """One symbol actor as the supervision tree and the metrics show it."""

    name: str
    """``symbol:<SYMBOL>``."""
    status: str
    """starting | running | failed | stopped (the supervisor's view)."""
    restarts: int
    """Crashes so far, all told."""
    last_error: str | None
    """The newest crash, as ``Type: message``."""
    depth: int
    """Messages (request parts) waiting in the mailbox now."""
    peak: int
    """Most messages the dispatcher found waiting at once."""
    capacity: int
    """The mailbox bound: a router posting to a full mailbox waits for room."""


class SymbolActor:
    __slots__ = ("symbol", "state", "_config", "_store", "_dispatcher", "_epochs", "_mailbox", "_capacity", "_peak",
                 "_scheduled", "_mode", "_refusal", "_epoch", "_version", "_book", "_closing", "_room", "_attention",
                 "_crash")

    def __init__(self, symbol: str, config: Config, store: Store, dispatcher: Scheduler, epochs: Epochs) -> None:
        self.symbol = symbol
        self.state = ChildState(f"symbol:{symbol}")
        """The supervisor's record of this child (``supervise`` keeps it)."""
        self._config = config
        self._store = store
        self._dispatcher = dispatcher
        self._epochs = epochs
        self._mailbox: list[Work] = []
        self._capacity = config.mailbox_capacity
        self._peak = 0
        self._scheduled = False
        """In the dispatcher's ready list (at most once)."""
        self._mode = STARTING
        self._refusal: Unavailable | None = None
        self._epoch = -1
        self._version = -1
        """``Epochs.version`` when ``_epoch`` was last known current: while the version has not
        moved, no epoch has, and ``take`` need not look the symbol up."""
        self._book: SymbolBook | None = None
        self._closing = False
        self._room: trio.Event | None = None
        self._attention = trio.Event()
        self._crash: tuple[Exception, list[Work]] | None = None

    # -- what anyone may read --------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The epoch the book was rebuilt at: what the flusher checks the applied work against."""
        return self._epoch

    def depth(self) -> int:
        return len(self._mailbox)

    def statistics(self) -> ActorStatistics:
        s = self.state
        return ActorStatistics(s.name, s.status, s.restarts, s.last_error, len(self._mailbox), self._peak,
                               self._capacity)

    # -- what the router calls -------------------------------------------------------------------
    def has_room(self) -> bool:
        return len(self._mailbox) < self._capacity

    async def wait_room(self) -> None:
        """Wait until the mailbox has room; raises ``ClosedResourceError`` once closing."""
        while len(self._mailbox) >= self._capacity:
            if self._closing:
                raise trio.ClosedResourceError("the actor is stopping")
            if self._room is None:
                self._room = trio.Event()
            await self._room.wait()
        if self._closing:
            raise trio.ClosedResourceError("the actor is stopping")

    def post(self, ticks: list[Tick], ticket: Ticket | None) -> None:
        """Append one request's ticks of this symbol (the caller made room) and put the actor in
        its dispatcher's next pass; the caller wakes the dispatchers once for the whole request."""
        self._mailbox.append((ticks, ticket))
        if not self._scheduled and self._mode != STARTING:
            self._scheduled = True
            self._dispatcher.enqueue(self)

    def close(self) -> None:
        """Stop once the mailbox is empty; senders waiting for room are refused."""
        self._closing = True
        self._free_room()
        self._attention.set()

    def fail_permanently(self) -> None:
        """Past the restart intensity: refuse everything from now on."""
        self._mode = FAILED
        self._refusal = SymbolFailed(f"symbol {self.symbol} is failed after repeated crashes; "
                                     "see /ops/health/supervisor")
        self._refuse_mail()

    # -- what the dispatcher calls ---------------------------------------------------------------
    def take(self, version: int) -> list[Work] | None:
        """The whole mailbox, if it may be applied now (``version``: ``Epochs.version`` at this
        pass); None otherwise: empty, rebuilding (the mail waits), refusing (the mail is answered
        now), or its epoch moved (a rebuild is started and the mail waits for it)."""
        self._scheduled = False
        mail = self._mailbox
        if not mail:
            return None
        mode = self._mode
        if mode != RUNNING:
            if mode != STARTING:
                self._refuse_mail()
            return None
        if self._version != version:  # some epoch moved since this actor's was checked
            if self._epoch != self._epochs.get(self.symbol, 0):
                self._mode = STARTING
                self._attention.set()
                return None
            self._version = version
        self._mailbox = []
        if len(mail) > self._peak:
            self._peak = len(mail)
        if self._room is not None:
            self._free_room()
        return mail

    def apply(self, ticks: list[Tick]) -> Applied:
        """Apply taken ticks to the book (raises if the book does: then ``crashed`` follows)."""
        return self._book.apply(ticks)  # type: ignore[union-attr]

    def crashed(self, exc: Exception, in_hand: list[Work]) -> None:
        """``apply`` raised: the task fails the work in hand and raises ``exc`` to its supervisor."""
        self._mode = STARTING
        self._crash = (exc, in_hand)
        self._attention.set()

    def done_with_mail(self) -> None:
        """A pass took this actor's mail while it was closing: the task may end once it is empty."""
        self._attention.set()

    # -- the task --------------------------------------------------------------------------------
    async def run(self) -> None:
        """One incarnation: rebuild, then serve until closed with an empty mailbox."""
        if not await self._rebuild():
            return
        self.state.status = "running"
        while True:
            await self._attention.wait()
            self._attention = trio.Event()
            if self._crash is not None:
                (exc, in_hand), self._crash = self._crash, None
                # answered here, not by the dispatcher, so the supervisor has counted the crash
                # (and maybe marked the actor failed) before any of these requesters runs again
                error = ActorCrashed(f"the actor for {self.symbol} restarted; retry the request")
                for _, ticket in in_hand:
                    if ticket is not None:
                        ticket.fail(error)
                raise exc
            if self._mode == STARTING:  # the dispatcher saw the epoch move
                if not await self._rebuild():
                    return
            elif self._closing and not self._mailbox:
                return

    def _free_room(self) -> None:
        if self._room is not None:
            self._room.set()
            self._room = None

    def _refuse_mail(self) -> None:
        """Answer everything in the mailbox with the current refusal."""
        mail, self._mailbox = self._mailbox, []
        self._free_room()
        for _, ticket in mail:
            if ticket is not None:
                ticket.fail(self._refusal)  # type: ignore[arg-type]

    async def _rebuild(self) -> bool:
        """Barrier, then load the book; while the store is unreadable, refuse waiting work.
        False if the actor was closed before it could rebuild (nothing is left to serve)."""
        self._mode = STARTING
        delay = 0.05
        while True:
            version = self._epochs.version
            epoch = self._epochs.get(self.symbol, 0)
            barrier = Barrier(trio.Event())
            self._dispatcher.barrier(barrier)
            await barrier.reached.wait()
            try:
                seed = await self._store.load_book(self.symbol, self._config.lateness)
            except Exception as exc:  # noqa: BLE001 - store faults: retried; Cancelled passes
                log.warning("rebuild_failed", symbol=self.symbol, error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                self._mode = UNAVAILABLE
                self._refusal = StoreUnavailable(f"the store is unreachable; {self.symbol} is not accepting ticks yet")
                self._refuse_mail()
                if self._closing:
                    return False
                with trio.move_on_after(delay):
                    while not self._closing:
                        await self._attention.wait()
                        self._attention = trio.Event()
                self._refuse_mail()
                if self._closing:
                    return False
                self._mode = STARTING
                delay = min(delay * 2, 2.0)
                continue
            config = self._config
            self._book = SymbolBook(self.symbol, lateness=config.lateness, max_keys=config.dedupe_max_keys,
                                    bars=seed.bars, keys=seed.keys, max_ts=seed.max_ts)
            self._epoch, self._version = epoch, version
            self._mode = RUNNING
            if self._mailbox and not self._scheduled:
                self._scheduled = True
                self._dispatcher.schedule(self)
            return True
