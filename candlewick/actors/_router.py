"""Router: admits a request whole, splits it per symbol, and hands each part to its actor.

Owns the symbols nursery (one supervised ``SymbolActor`` per symbol, created on the first tick
of that symbol) and every actor's mailbox, so mailboxes outlive actor restarts. Admission
(``Admission``) bounds the ticks in flight; mailboxes are bounded too. Restart policy of the
children: one-for-one (``supervise``); the router itself is one-for-all with the engine.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import attrs
import structlog
import trio

from candlewick.actors._messages import Barrier, Epochs, FlushItem, Ticket, Work
from candlewick.actors._symbol import SymbolActor, reject_forever
from candlewick.engine._admission import Admission
from candlewick.engine._config import Config
from candlewick.engine._store import Store, group_by_symbol
from candlewick.engine._supervisor import ChildState, RestartPolicy, supervise
from candlewick.errors import Overloaded, StoreUnavailable, SymbolFailed
from candlewick.schema import Receipt, Tick

log = structlog.get_logger("candlewick.router")


@attrs.define
class Slot:
    """The router's handle on one symbol actor."""

    send: trio.MemorySendChannel[Work]
    receive: trio.MemoryReceiveChannel[Work]
    state: ChildState
    peak: int = 0
    """Most messages the actor found waiting when it woke (it drains them all at once)."""

    def depth(self) -> int:
        return self.send.statistics().current_buffer_used


class Router:
    def __init__(self, config: Config, store: Store, lanes: list[trio.MemorySendChannel[FlushItem | Barrier]],
                 epochs: Epochs, metrics=None) -> None:
        self.config = config
        self.epochs = epochs
        self.store = store
        self.lanes = lanes
        self.metrics = metrics
        self.admission = Admission(config.max_in_flight_ticks)
        self.policy = RestartPolicy(config.max_restarts, config.restart_period)
        self.slots: dict[str, Slot] = {}
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._closed = trio.Event()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Hold the symbols nursery until ``close`` has been called and every actor drained."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await self._closed.wait()

    def close(self) -> None:
        """Stop taking work; each actor finishes its mailbox and stops, then ``run`` returns."""
        self._closing = True
        for slot in self.slots.values():
            slot.send.close()
        self._closed.set()

    # -- actors ---------------------------------------------------------------------------
    def _slot(self, symbol: str) -> Slot:
        slot = self.slots.get(symbol)
        if slot is None:
            if self._closing:
                raise trio.ClosedResourceError("router is closed")
            send, receive = trio.open_memory_channel[Work](self.config.mailbox_capacity)
            slot = self.slots[symbol] = Slot(send, receive, ChildState(f"symbol:{symbol}"))
            assert self._nursery is not None, "router is not running"
            self._nursery.start_soon(self._run_actor, symbol, slot, name=f"symbol:{symbol}")
        return slot

    async def _run_actor(self, symbol: str, slot: Slot) -> None:
        lane = self.lanes[zlib.crc32(symbol.encode()) % len(self.lanes)]  # stable: one lane per symbol
        actor = SymbolActor(symbol, self.config, self.store, slot.receive, lane, self.epochs, slot)

        def ready() -> None:
            slot.state.status = "running"
        actor.on_ready = ready  # type: ignore[method-assign]

        async def failed() -> None:
            if self.metrics is not None:
                self.metrics.actor_failed(symbol)
            await reject_forever(symbol, slot.receive)

        async def body() -> None:
            try:
                await actor.run()
            except Exception:
                if self.metrics is not None:
                    self.metrics.actor_restarts.inc()
                raise
        await supervise(slot.state, body, self.policy, on_failed=failed)

    def failed_symbols(self) -> list[str]:
        return [s for s, slot in self.slots.items() if slot.state.status == "failed"]

    # -- the ingest entry point -------------------------------------------------------------
    async def submit(self, ticks: Sequence[Tick]) -> Receipt:
        """Apply a request's ticks; return once committed. Raises ``Unavailable`` subclasses,
        in which case nothing of the request was applied (or, after an actor crash, what was
        is deduplicated on the client's retry)."""
        if self._closing:
            raise Overloaded("the engine is shutting down; retry against another instance")
        groups = group_by_symbol(ticks)
        for symbol in groups:
            slot = self.slots.get(symbol)
            if slot is not None and slot.state.status == "failed":
                raise SymbolFailed(f"symbol {symbol} is failed after repeated crashes; see /ops/health/supervisor")
        n = len(ticks)
        with trio.move_on_after(self.config.ingest_deadline) as admitting:
            await self.admission.acquire(n)
        if admitting.cancelled_caught:
            raise Overloaded(f"ingest stayed full for {self.config.ingest_deadline:g}s; retry later")
        ticket = Ticket(len(groups), on_done=lambda: self.admission.release(n))
        unsent = len(groups)
        try:
            for symbol, part in groups.items():
                slot = self._slot(symbol)
                work = Work(part, ticket)
                try:  # no scheduling round trip while the mailbox has room (the common case)
                    slot.send.send_nowait(work)
                except trio.WouldBlock:
                    await slot.send.send(work)
                unsent -= 1
        except BaseException as exc:
            error = Overloaded("the engine is shutting down; retry against another instance")
            for _ in range(unsent):  # balance the ticket so its admission units come back
                ticket.fail(error)
            if isinstance(exc, trio.ClosedResourceError):
                raise error from None
            raise
        with trio.move_on_after(self.config.ack_deadline):
            await ticket.done.wait()
        if not ticket.done.is_set():
            if ticket.try_expire():
                raise StoreUnavailable(f"ticks not committed within {self.config.ack_deadline:g}s; nothing of "
                                       "this request was applied, retry it")
            await ticket.done.wait()  # a write of it is under way; the flusher bounds how long
        if ticket.error is not None:
            raise ticket.error
        return ticket.receipt()

