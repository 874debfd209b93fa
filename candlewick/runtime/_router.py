"""Router: admits a request whole, splits it per symbol, and posts each part to its symbol's actor.

State it owns: the admission budget, the symbols nursery (one supervised ``SymbolActor`` per symbol,
made on its first tick, and one ``Dispatcher`` per flusher lane) and the failed symbols. Writes to
the actors' mailboxes through ``has_room``/``wait_room``/``post`` and wakes the dispatchers once per
request. Restart policy of the children: one-for-one (``supervise``); the router itself is
one-for-all with the engine. See docs/ARCHITECTURE.md, "One tick, from the POST to the SSE client"
(steps 4 and 5).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from itertools import repeat

import numpy as np
import structlog
import trio

from candlewick.config import Config
from candlewick.domain import Ticket
from candlewick.errors import Overloaded, StoreUnavailable, SymbolFailed
from candlewick.runtime._actor import SymbolActor
from candlewick.runtime._admission import Admission
from candlewick.runtime._dispatcher import Dispatcher
from candlewick.runtime._messages import Barrier, Epochs, FlushItem
from candlewick.runtime._rows import Part
from candlewick.runtime._supervisor import RestartPolicy, supervise
from candlewick.schema import DIGEST_BYTES, Receipt, Tick, TickColumns, digest_key, digests_from_bytes
from candlewick.storage import Store

log = structlog.get_logger("candlewick.router")


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
        self.dispatchers = [Dispatcher(lane, epochs, lateness=config.lateness, max_keys=config.dedupe_max_keys)
                            for lane in lanes]
        self.slots: dict[str, SymbolActor] = {}
        """symbol -> its actor (state, mailbox depth and peak for the supervision tree)."""
        self._failed: set[str] = set()
        self._where: dict[str, int] = {}
        """symbol -> its lane and row, packed (``lane << 32 | row``): what ``_parts`` reads for a
        whole request at once."""
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._closed = trio.Event()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Hold the symbols nursery until ``close`` has been called and every actor drained."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for i, dispatcher in enumerate(self.dispatchers):
                nursery.start_soon(dispatcher.run, name=f"dispatcher:{i}")
            task_status.started()
            await self._closed.wait()

    def close(self) -> None:
        """Stop taking work; each actor's mailbox is applied, the actors stop, then ``run`` returns."""
        self._closing = True
        for actor in self.slots.values():
            actor.close()
        for dispatcher in self.dispatchers:
            dispatcher.close()
        self._closed.set()

    # -- actors ---------------------------------------------------------------------------
    def _spawn(self, symbol: str) -> SymbolActor:
        if self._closing:
            raise trio.ClosedResourceError("router is closed")
        assert self._nursery is not None, "router is not running"
        dispatcher = self.dispatchers[zlib.crc32(symbol.encode()) % len(self.dispatchers)]  # stable: one lane
        actor = self.slots[symbol] = SymbolActor(symbol, self.config, self.store, dispatcher, self.epochs)
        self._where[symbol] = self.dispatchers.index(dispatcher) << 32 | actor.row
        dispatcher.adopt()
        self._nursery.start_soon(self._run_actor, actor, dispatcher, name=f"symbol:{symbol}")
        return actor

    async def _run_actor(self, actor: SymbolActor, dispatcher: Dispatcher) -> None:
        async def failed() -> None:
            if self.metrics is not None:
                self.metrics.actor_failed(actor.symbol)
            self._failed.add(actor.symbol)
            actor.fail_permanently()

        async def body() -> None:
            try:
                await actor.run()
            except Exception:
                if self.metrics is not None:
                    self.metrics.actor_restarts.inc()
                raise
        try:
            await supervise(actor.state, body, self.policy, on_failed=failed)
        finally:
            dispatcher.release()

    def _wake_dispatchers(self) -> None:
        for dispatcher in self.dispatchers:
            dispatcher.wake_if_ready()

    def failed_symbols(self) -> list[str]:
        return [s for s, actor in self.slots.items() if actor.state.status == "failed"]

    # -- the ingest entry point -------------------------------------------------------------
    async def submit(self, ticks: Sequence[Tick] | TickColumns) -> Receipt:
        """Apply a request's ticks; return once committed. Raises ``Unavailable`` subclasses,
        in which case nothing of the request was applied (or, after an actor crash, what was
        is deduplicated on the client's retry)."""
        if self._closing:
            raise Overloaded("the engine is shutting down; retry against another instance")
        cols = ticks if isinstance(ticks, TickColumns) else columns_of(ticks)
        symbols = cols.symbols
        if self._failed and not self._failed.isdisjoint(symbols):
            symbol = min(self._failed.intersection(symbols))
            raise SymbolFailed(f"symbol {symbol} is failed after repeated crashes; see /ops/health/supervisor")
        n = len(cols)
        with trio.move_on_after(self.config.ingest_deadline) as admitting:
            await self.admission.acquire(n)
        if admitting.cancelled_caught:
            raise Overloaded(f"ingest stayed full for {self.config.ingest_deadline:g}s; retry later")
        done = trio.Event()

        def on_done() -> None:
            self.admission.release(n)
            done.set()

        ticket = Ticket(n, len(symbols), on_done=on_done)
        unsent = len(symbols)
        try:
            if self._closing:
                raise trio.ClosedResourceError("router is closed")
            capacity = self.config.mailbox_capacity
            for lane, part in self._parts(cols, ticket):
                dispatcher = self.dispatchers[lane]
                if not dispatcher.has_room(part.urows, capacity):
                    self._wake_dispatchers()
                    await dispatcher.wait_room(part.urows, capacity)  # backpressure: an actor is behind
                dispatcher.post(part)
                unsent -= len(part.urows)
            self._wake_dispatchers()
        except BaseException as exc:
            error = Overloaded("the engine is shutting down; retry against another instance")
            if unsent:  # balance the ticket so its admission units come back
                ticket.fail(error, unsent)
            if isinstance(exc, trio.ClosedResourceError):
                raise error from None
            raise
        with trio.move_on_after(self.config.ack_deadline):
            await done.wait()
        if not ticket.finished:
            if ticket.try_expire():
                raise StoreUnavailable(f"ticks not committed within {self.config.ack_deadline:g}s; nothing of "
                                       "this request was applied, retry it")
            await done.wait()  # a write of it is under way; the flusher bounds how long
        if ticket.error is not None:
            raise ticket.error
        return ticket.receipt()

    def _parts(self, cols: TickColumns, ticket: Ticket) -> list[tuple[int, Part]]:
        """The request's ticks split by lane, each with the row of its symbol's actor. The symbols
        are looked up all at once; only those without an actor yet take a step each (spawning it)."""
        symbols = cols.symbols
        where = np.fromiter(map(self._where.get, symbols, repeat(-1)), dtype=np.int64, count=len(symbols))
        for code in np.flatnonzero(where < 0).tolist():
            symbol = symbols[code]
            if symbol not in self._where:
                self._spawn(symbol)
            where[code] = self._where[symbol]
        rows = (where & 0xFFFFFFFF).astype(np.int32)
        sym = cols.sym
        tick_rows = rows[sym]
        if len(self.dispatchers) == 1:  # one symbol, one row: the distinct rows are the sorted rows
            return [(0, Part(tick_rows, cols.price, cols.ts, cols.volume, cols.digest, ticket, np.sort(rows)))]
        lanes = (where >> 32).astype(np.int32)
        tick_lanes = lanes[sym]
        out = []
        for lane in np.unique(lanes).tolist():
            mask = tick_lanes == lane
            out.append((lane, Part(tick_rows[mask], cols.price[mask], cols.ts[mask], cols.volume[mask],
                                   cols.digest[mask], ticket, np.sort(rows[lanes == lane]))))
        return out


def columns_of(ticks: Sequence[Tick]) -> TickColumns:
    """Ticks as columns; each key is the decoder's 16-byte digest, or (ticks built by hand) a text to digest."""
    codes: dict[str, int] = {}
    n = len(ticks)
    sym = np.fromiter((codes.setdefault(t.symbol, len(codes)) for t in ticks), dtype=np.int32, count=n)
    keys = [t.key for t in ticks]
    if all(type(k) is bytes and len(k) == DIGEST_BYTES for k in keys):
        digest = digests_from_bytes(b"".join(keys))
    else:
        digest = digests_from_bytes(b"".join(k if type(k) is bytes and len(k) == DIGEST_BYTES else
                                             digest_key(k if type(k) is bytes else k.encode()) for k in keys))
    return TickColumns(list(codes), sym, np.fromiter((t.price for t in ticks), dtype=np.float64, count=n),
                       np.fromiter((t.ts for t in ticks), dtype=np.float64, count=n),
                       np.fromiter((t.volume for t in ticks), dtype=np.float64, count=n), digest)
