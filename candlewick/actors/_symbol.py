"""SymbolActor: owns one symbol's book (dedupe horizon, live bars, SMA10).

Reads ``Work`` from its mailbox (bounded; owned by the router so it survives restarts),
drains whatever else is waiting with ``receive_nowait``, applies it all into the sans-IO
``SymbolBook``, and sends one ``FlushItem`` to the flusher.

The book is rebuilt from the store (after a ``Barrier`` proves the flusher has dealt with
everything sent before) at start, after a crash, and whenever the flusher has dropped some of
this symbol's applied work (its epoch moved: store outage or an expired request). While the
store cannot be read, waiting requests are answered 503 STORE_UNAVAILABLE and the rebuild is
retried with backoff, so an outage never exhausts the restart intensity.

Restart policy: one-for-one under ``supervise``; a crash loses only the messages in hand,
whose requests get 503 and retry.
"""

from __future__ import annotations

import structlog
import trio

from candlewick.actors._messages import Barrier, Epochs, FlushItem, Ticket, Work
from candlewick.engine._book import SymbolBook
from candlewick.engine._config import Config
from candlewick.engine._store import Store
from candlewick.errors import ActorCrashed, StoreUnavailable, SymbolFailed, Unavailable

log = structlog.get_logger("candlewick.actor")

DRAIN_MAX = 256


class SymbolActor:
    def __init__(self, symbol: str, config: Config, store: Store,
                 mailbox: trio.MemoryReceiveChannel[Work],
                 flusher: trio.MemorySendChannel[FlushItem | Barrier], epochs: Epochs, stats=None) -> None:
        self.symbol = symbol
        self.config = config
        self.store = store
        self.mailbox = mailbox
        self.flusher = flusher
        self.epochs = epochs
        self.stats = stats
        """Where the mailbox peak is recorded (the router's Slot), if anywhere."""
        self.epoch = -1
        self.book: SymbolBook | None = None

    def on_ready(self) -> None:
        """Hook for the router's bookkeeping; replaced per actor."""

    async def run(self) -> None:
        """One incarnation: rebuild, then serve the mailbox until it closes."""
        await self._rebuild()
        self.on_ready()
        receive_nowait = self.mailbox.receive_nowait
        async for first in self.mailbox:
            batch = [first]
            try:
                while len(batch) < DRAIN_MAX:
                    batch.append(receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                pass
            if self.stats is not None and len(batch) > self.stats.peak:
                self.stats.peak = len(batch)
            try:
                if self.epoch != self.epochs.get(self.symbol, 0):
                    await self._rebuild(batch)
                live = [w for w in batch if w.ticket is None or not w.ticket.expired]
                stale = [w for w in batch if w.ticket is not None and w.ticket.expired]
                item = self._apply(live)
                try:
                    self.flusher.send_nowait(item)
                except trio.WouldBlock:
                    await self.flusher.send(item)
            except BaseException:
                error = ActorCrashed(f"the actor for {self.symbol} restarted; retry the request")
                for work in batch:
                    _fail(work.ticket, error)
                raise
            for work in stale:  # requests already answered 503: never applied
                _fail(work.ticket, StoreUnavailable("expired"))

    async def _rebuild(self, held: list[Work] | None = None) -> None:
        """Barrier, then load the book; while the store is unreachable, refuse waiting work."""
        delay = 0.05
        while True:
            epoch = self.epochs.get(self.symbol, 0)
            barrier = Barrier(trio.Event())
            await self.flusher.send(barrier)
            await barrier.reached.wait()
            try:
                seed = await self.store.load_book(self.symbol, self.config.lateness)
            except Exception as exc:  # noqa: BLE001 - store faults: retried; Cancelled passes
                log.warning("rebuild_failed", symbol=self.symbol, error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                error = StoreUnavailable(f"the store is unreachable; {self.symbol} is not accepting ticks yet")
                for work in held or ():
                    _fail(work.ticket, error)
                if held:
                    held.clear()
                with trio.move_on_after(delay):
                    async for work in self.mailbox:
                        _fail(work.ticket, error)
                delay = min(delay * 2, 2.0)
                continue
            self.book = SymbolBook(self.symbol, lateness=self.config.lateness, max_keys=self.config.dedupe_max_keys,
                                   bars=seed.bars, keys=seed.keys, max_ts=seed.max_ts)
            self.epoch = epoch
            return

    def _apply(self, batch: list[Work]) -> FlushItem:
        book = self.book
        assert book is not None
        new: list = []
        events: list = []
        tickets: list[tuple[Ticket, int]] = []
        for work in batch:
            ticket = work.ticket
            applied = book.apply(work.ticks)
            new.extend(applied.new)
            events.extend(applied.events)
            if ticket is not None:
                ticket.duplicates += applied.duplicates
                ticket.skipped += applied.skipped
                tickets.append((ticket, len(applied.new)))
        return FlushItem(self.symbol, self.epoch, new, events, tickets)


def _fail(ticket: Ticket | None, error: Unavailable) -> None:
    if ticket is not None:
        ticket.fail(error)


async def reject_forever(symbol: str, mailbox: trio.MemoryReceiveChannel[Work]) -> None:
    """What a failed actor's mailbox does: answer every waiting request with 503 SYMBOL_FAILED."""
    async for work in mailbox:
        _fail(work.ticket, SymbolFailed(f"symbol {symbol} is failed after repeated crashes; see /ops/health/supervisor"))
