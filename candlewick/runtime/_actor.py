"""SymbolActor: owns one symbol's book (dedupe horizon, live bars, SMA10); Dispatcher: runs the
apply step of every symbol actor of one flusher lane.

A ``SymbolActor`` is a supervised task plus the state it owns: the sans-IO ``SymbolBook``, its
epoch and its mailbox (a bounded list of ``Work`` the router appends to; it belongs to the actor
object, so it survives restarts). The task does the asynchronous part of the actor's life:
rebuilding the book from the store (after a ``Barrier`` proves the flusher has dealt with
everything sent before) at start, after a crash, and whenever the flusher has dropped some of
this symbol's applied work (its epoch moved: store outage or an expired request). While the
store cannot be read, waiting requests are answered 503 STORE_UNAVAILABLE and the rebuild is
retried with backoff, so an outage never exhausts the restart intensity.

The apply step itself is synchronous (the book is sans-IO), so it does not need a task switch
per actor: the lane's ``Dispatcher`` wakes once for everything that arrived, and per pass takes
every running actor's whole mailbox, applies it into its book in one ``apply`` call (the parts of
several requests joined), and sends the lane one ``FlushItem`` for all those symbols. That is how
an actor runtime schedules many cheap actors on one worker; here it saves a trio task switch per
symbol per batch, which at thousands of symbols cost more than the arithmetic. Per symbol, work
is still applied in arrival order by exactly one owner at a time.

Restart policy: one-for-one under ``supervise``. A crash inside ``apply`` is caught by the
dispatcher and delivered to the actor's task, which raises it; only that symbol's work in hand is
lost (its requests get 503 ACTOR_RESTARTED and retry), and the restarted actor rebuilds.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from itertools import accumulate, chain
from operator import itemgetter

import structlog
import trio

from candlewick.config import Config
from candlewick.domain import SymbolBook
from candlewick.errors import ActorCrashed, StoreUnavailable, SymbolFailed, Unavailable
from candlewick.runtime._messages import Barrier, Epochs, FlushItem, Ticket, Work
from candlewick.runtime._supervisor import ChildState
from candlewick.storage import Store

log = structlog.get_logger("candlewick.actor")

STARTING, RUNNING, UNAVAILABLE, FAILED = "starting", "running", "unavailable", "failed"
"""Actor modes: only RUNNING applies; STARTING keeps its mail waiting (rebuilding); UNAVAILABLE
(store unreadable, between rebuild attempts) and FAILED answer it at once with ``refusal``."""

PASS_MAX_TICKS = 20_000
"""A dispatcher pass stops taking actors past this many ticks, so one pass never holds the trio
loop for long (the rest waits for the next pass)."""

_ticket_of = itemgetter(1)
_ticks_of = itemgetter(0)


class SymbolActor:
    __slots__ = ("symbol", "config", "store", "dispatcher", "epochs", "state", "mailbox", "capacity", "peak",
                 "scheduled", "mode", "refusal", "epoch", "version", "book", "closing", "_room", "_attention",
                 "_crash")

    def __init__(self, symbol: str, config: Config, store: Store, dispatcher: Dispatcher, epochs: Epochs) -> None:
        self.symbol = symbol
        self.config = config
        self.store = store
        self.dispatcher = dispatcher
        self.epochs = epochs
        self.state = ChildState(f"symbol:{symbol}")
        """What the supervision tree shows (``supervise`` keeps it)."""
        self.mailbox: list[Work] = []
        self.capacity = config.mailbox_capacity
        self.peak = 0
        """Most messages the dispatcher found waiting at once (it takes them all)."""
        self.scheduled = False
        """In the dispatcher's ready list (at most once)."""
        self.mode = STARTING
        self.refusal: Unavailable | None = None
        self.epoch = -1
        self.version = -1
        """``Epochs.version`` when ``epoch`` was last known current: while the version has not
        moved, no epoch has, and the dispatcher need not look the symbol up."""
        self.book: SymbolBook | None = None
        self.closing = False
        self._room: trio.Event | None = None
        self._attention = trio.Event()
        self._crash: tuple[Exception, list[Work]] | None = None

    def depth(self) -> int:
        return len(self.mailbox)

    # -- what the router calls (it appends to ``mailbox`` and schedules the actor itself) --------
    async def wait_room(self) -> None:
        """Wait until the mailbox has room; raises ``ClosedResourceError`` once closing."""
        while len(self.mailbox) >= self.capacity:
            if self.closing:
                raise trio.ClosedResourceError("the actor is stopping")
            if self._room is None:
                self._room = trio.Event()
            await self._room.wait()
        if self.closing:
            raise trio.ClosedResourceError("the actor is stopping")

    def close(self) -> None:
        """Stop once the mailbox is empty; senders waiting for room are refused."""
        self.closing = True
        self._free_room()
        self._attention.set()

    def _free_room(self) -> None:
        if self._room is not None:
            self._room.set()
            self._room = None

    # -- the task -------------------------------------------------------------------------------
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
            if self.mode == STARTING:  # the dispatcher saw the epoch move
                if not await self._rebuild():
                    return
            elif self.closing and not self.mailbox:
                return

    def crashed(self, exc: Exception, in_hand: list[Work]) -> None:
        """Called by the dispatcher: ``apply`` raised; the task fails the work in hand and
        raises it to its supervisor."""
        self.mode = STARTING
        self._crash = (exc, in_hand)
        self._attention.set()

    def rebuild_soon(self) -> None:
        """Called by the dispatcher: the epoch moved; rebuild before applying anything more."""
        self.mode = STARTING
        self._attention.set()

    def done_with_mail(self) -> None:
        """Called by the dispatcher after a pass took this actor's mail while closing."""
        self._attention.set()

    def fail_permanently(self) -> None:
        """Past the restart intensity: refuse everything from now on."""
        self.mode = FAILED
        self.refusal = SymbolFailed(f"symbol {self.symbol} is failed after repeated crashes; "
                                    "see /ops/health/supervisor")
        self.refuse_mail()

    def refuse_mail(self) -> None:
        """Answer everything in the mailbox with ``refusal``."""
        mail, self.mailbox = self.mailbox, []
        self._free_room()
        for _, ticket in mail:
            if ticket is not None:
                ticket.fail(self.refusal)

    async def _rebuild(self) -> bool:
        """Barrier, then load the book; while the store is unreadable, refuse waiting work.
        False if the actor was closed before it could rebuild (nothing is left to serve)."""
        self.mode = STARTING
        delay = 0.05
        while True:
            version = self.epochs.version
            epoch = self.epochs.get(self.symbol, 0)
            barrier = Barrier(trio.Event())
            self.dispatcher.barrier(barrier)
            await barrier.reached.wait()
            try:
                seed = await self.store.load_book(self.symbol, self.config.lateness)
            except Exception as exc:  # noqa: BLE001 - store faults: retried; Cancelled passes
                log.warning("rebuild_failed", symbol=self.symbol, error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                self.mode = UNAVAILABLE
                self.refusal = StoreUnavailable(f"the store is unreachable; {self.symbol} is not accepting ticks yet")
                self.refuse_mail()
                if self.closing:
                    return False
                with trio.move_on_after(delay):
                    while not self.closing:
                        await self._attention.wait()
                        self._attention = trio.Event()
                self.refuse_mail()
                if self.closing:
                    return False
                self.mode = STARTING
                delay = min(delay * 2, 2.0)
                continue
            self.book = SymbolBook(self.symbol, lateness=self.config.lateness, max_keys=self.config.dedupe_max_keys,
                                   bars=seed.bars, keys=seed.keys, max_ts=seed.max_ts)
            self.epoch, self.version = epoch, version
            self.mode = RUNNING
            if self.mailbox and not self.scheduled:
                self.scheduled = True
                self.dispatcher.schedule(self)
            return True


class Dispatcher:
    """Runs the apply step of the symbol actors of one flusher lane and feeds that lane.

    Woken by the router when an idle actor gets mail; each pass applies every ready actor's
    mailbox and sends one ``FlushItem`` (then any barriers asked for meanwhile, so a barrier
    always follows everything applied before it was asked for). Ends once closed and every actor
    of the lane has stopped. Restart policy: none of its own (it catches the actors' crashes);
    anything else escalates to the engine.
    """

    def __init__(self, lane: trio.MemorySendChannel[FlushItem | Barrier], epochs: Epochs) -> None:
        self.lane = lane
        self.epochs = epochs
        self.ready: list[SymbolActor] = []
        self.barriers: list[Barrier] = []
        self.live = 0
        """Actor tasks of this lane still running."""
        self.closing = False
        self.passes = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._expirations = Ticket.expirations

    def schedule(self, actor: SymbolActor) -> None:
        self.ready.append(actor)
        if self._lot:
            self._lot.unpark_all()

    def barrier(self, barrier: Barrier) -> None:
        self.barriers.append(barrier)
        if self._lot:
            self._lot.unpark_all()

    def wake(self) -> None:
        if self._lot:
            self._lot.unpark_all()

    async def run(self) -> None:
        lane = self.lane
        while True:
            if not self.ready and not self.barriers:
                if self.closing and self.live == 0:
                    return
                await self._lot.park()
                continue
            item = self._pass() if self.ready else None
            if item is not None:
                try:  # no scheduling round trip while the lane has room (the common case)
                    lane.send_nowait(item)
                except trio.WouldBlock:
                    await lane.send(item)
            if self.barriers:
                barriers, self.barriers = self.barriers, []
                for barrier in barriers:
                    await lane.send(barrier)
            elif self.ready:  # a capped pass left work: let others run before the next one
                await trio.lowlevel.checkpoint()

    def _pass(self) -> FlushItem | None:
        ready = self.ready
        epochs_get = self.epochs.get
        version = self.epochs.version
        check_expiry = Ticket.expirations != self._expirations
        self._expirations = Ticket.expirations
        writes: dict[str, list] = {}
        epochs: dict[str, int] = {}
        parts: dict[str, list[Work]] = {}
        events: list[tuple] = []
        taken: list[Work] = []
        closing = self.closing
        n = ticks_taken = 0
        for index, actor in enumerate(ready):
            if ticks_taken >= PASS_MAX_TICKS:
                self.ready = ready[index:]
                break
            actor.scheduled = False
            mail = actor.mailbox
            if not mail:
                continue
            mode = actor.mode
            if mode != RUNNING:
                if mode != STARTING:  # unavailable or failed: answered at once
                    actor.refuse_mail()
                continue  # starting: the mail waits for the rebuild, which reschedules the actor
            symbol = actor.symbol
            epoch = actor.epoch
            if actor.version != version:  # some epoch moved since this actor's was checked
                if epoch != epochs_get(symbol, 0):
                    actor.rebuild_soon()
                    continue
                actor.version = version
            actor.mailbox = []
            if len(mail) > actor.peak:
                actor.peak = len(mail)
            if actor._room is not None:
                actor._free_room()
            if check_expiry:
                mail = _drop_expired(mail)
                if not mail:
                    continue
            ticks = mail[0][0] if len(mail) == 1 else list(chain.from_iterable(map(_ticks_of, mail)))
            try:
                applied = actor.book.apply(ticks)  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - the actor's crash: its work in hand fails, it restarts
                actor.crashed(exc, mail)
                continue
            ticks_taken += len(ticks)
            if applied.duplicates or applied.skipped:
                _count_rejected(mail, applied)
            new = applied.new
            if new:
                writes[symbol] = new
                events += applied.events
                n += len(new)
            epochs[symbol] = epoch
            parts[symbol] = mail
            taken += mail
            if closing:
                actor.done_with_mail()
        else:
            self.ready = []
        if not epochs:
            return None
        self.passes += 1
        return FlushItem(writes, epochs, parts, events, Counter(map(_ticket_of, taken)), version, n)


def _drop_expired(mail: list[Work]) -> list[Work]:
    """Parts of requests already answered 503 are never applied."""
    live = []
    for work in mail:
        ticket = work[1]
        if ticket is not None and ticket.expired:
            ticket.fail(StoreUnavailable("expired"))
        else:
            live.append(work)
    return live


def _count_rejected(mail: list[Work], applied) -> None:
    """Tell each request of a joined batch its own duplicate and skipped counts."""
    if len(mail) == 1:
        ticket = mail[0][1]
        if ticket is not None:
            ticket.duplicates += applied.duplicates
            ticket.skipped += applied.skipped
        return
    ends = list(accumulate(len(part) for part, _ in mail))
    for i in applied.duplicate_at or ():
        ticket = mail[bisect_right(ends, i)][1]
        if ticket is not None:
            ticket.duplicates += 1
    for i in applied.skipped_at or ():
        ticket = mail[bisect_right(ends, i)][1]
        if ticket is not None:
            ticket.skipped += 1
