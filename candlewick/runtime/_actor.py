"""SymbolActor: one symbol's identity and supervised life; its mode, mailbox and book are a row of its lane.

State it owns, in private fields: its refusal, a crash to report and what it was asked to do. Its
mode, mailbox depth and book live in its row of the lane's ``Dispatcher`` (columns shared by every
actor of the lane), which applies its work and reports a crash (``crashed``) or a moved epoch
(``rebuild``). Its task rebuilds the book from the store at start, after a crash and when its epoch
moved. Restart policy: one-for-one under ``supervise``; past the intensity the actor is failed and
refuses everything with 503 SYMBOL_FAILED. See docs/ARCHITECTURE.md, "Actors as rows" and "Restart
rules".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import structlog
import trio

from candlewick.config import Config
from candlewick.domain import Ticket
from candlewick.errors import ActorCrashed, StoreUnavailable, SymbolFailed, Unavailable
from candlewick.runtime._messages import Barrier, Epochs
from candlewick.runtime._rows import FAILED, STARTING, UNAVAILABLE
from candlewick.runtime._supervisor import ChildState
from candlewick.storage import Store

if TYPE_CHECKING:
    from candlewick.runtime._dispatcher import Dispatcher

log = structlog.get_logger("candlewick.actor")


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
    """One symbol's identity and supervised life; its mode, mailbox and book are a row of its
    lane's ``Dispatcher``."""

    __slots__ = ("symbol", "state", "row", "_config", "_store", "_dispatcher", "_epochs", "_capacity", "_refusal",
                 "_closing", "_attention", "_crash", "_rebuild_wanted")

    def __init__(self, symbol: str, config: Config, store: Store, dispatcher: Dispatcher, epochs: Epochs) -> None:
        self.symbol = symbol
        self.state = ChildState(f"symbol:{symbol}")
        """The supervisor's record of this child (``supervise`` keeps it)."""
        self._config = config
        self._store = store
        self._dispatcher = dispatcher
        self._epochs = epochs
        self._capacity = config.mailbox_capacity
        self._refusal: Unavailable | None = None
        self._closing = False
        self._attention = trio.Event()
        self._crash: tuple[Exception, list[Ticket | None]] | None = None
        self._rebuild_wanted = False
        self.row = dispatcher.add(self)

    # -- what anyone may read --------------------------------------------------------------------
    @property
    def refusal(self) -> Unavailable:
        """What work for this actor is answered with while it is unavailable or failed."""
        return self._refusal or StoreUnavailable(f"{self.symbol} is not accepting ticks yet")

    def depth(self) -> int:
        return self._dispatcher.depth(self.row)

    def statistics(self) -> ActorStatistics:
        s = self.state
        rows = self._dispatcher.rows
        return ActorStatistics(s.name, s.status, s.restarts, s.last_error, int(rows.depth[self.row]),
                               int(rows.peak[self.row]), self._capacity)

    # -- what the router and the dispatcher call ----------------------------------------------------------
    def close(self) -> None:
        """Stop once the mailbox is empty; senders waiting for room are refused."""
        self._closing = True
        self._attention.set()

    def fail_permanently(self) -> None:
        """Past the restart intensity: refuse everything from now on."""
        self._refusal = SymbolFailed(f"symbol {self.symbol} is failed after repeated crashes; "
                                     "see /ops/health/supervisor")
        self._dispatcher.set_mode(self.row, FAILED)

    def rebuild(self) -> None:
        """The dispatcher saw this actor's epoch move (it is STARTING now): rebuild the book."""
        self._rebuild_wanted = True
        self._attention.set()

    def crashed(self, exc: Exception, in_hand: list[Ticket | None]) -> None:
        """Applying this actor's work raised (it is STARTING now): the task fails the work in hand
        and raises ``exc`` to its supervisor."""
        self._crash = (exc, in_hand)
        self._attention.set()

    def done_with_mail(self) -> None:
        """A pass ran while closing: the task may end once the mailbox is empty."""
        if self._closing:
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
                for ticket in in_hand:
                    if ticket is not None:
                        ticket.fail(error)
                raise exc
            if self._rebuild_wanted:
                self._rebuild_wanted = False
                if not await self._rebuild():
                    return
            elif self._closing and not self.depth():
                return

    async def _rebuild(self) -> bool:
        """Barrier, then load the book; while the store is unreadable, refuse waiting work.
        False if the actor was closed before it could rebuild (nothing is left to serve)."""
        dispatcher, row = self._dispatcher, self.row
        dispatcher.set_mode(row, STARTING)
        delay = 0.05
        while True:
            epoch = self._epochs.get(self.symbol, 0)
            barrier = Barrier(trio.Event())
            dispatcher.barrier(barrier)
            await barrier.reached.wait()
            try:
                seed = await self._store.load_book(self.symbol, self._config.lateness)
            except Exception as exc:  # noqa: BLE001 - store faults: retried; Cancelled passes
                log.warning("rebuild_failed", symbol=self.symbol, error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                self._refusal = StoreUnavailable(f"the store is unreachable; {self.symbol} is not accepting ticks yet")
                dispatcher.set_mode(row, UNAVAILABLE)
                if self._closing:
                    return False
                with trio.move_on_after(delay):
                    while not self._closing:
                        await self._attention.wait()
                        self._attention = trio.Event()
                if self._closing:
                    return False
                dispatcher.set_mode(row, STARTING)
                delay = min(delay * 2, 2.0)
                continue
            self._refusal = None
            dispatcher.seed(row, seed, epoch)
            return True
