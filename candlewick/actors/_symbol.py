"""SymbolActor: owns one symbol's book (dedupe horizon, live bars, SMA10).

Reads ``Work`` from its mailbox (bounded; owned by the router so it survives restarts),
drains whatever else is waiting with ``receive_nowait``, applies it all with one call per
message into the sans-IO ``SymbolBook``, and sends one ``FlushItem`` to the flusher.

Restart policy: one-for-one under ``supervise``. A (re)start first waits for the flusher to
commit everything this symbol sent before (a ``Barrier``), then rebuilds the book from the
store, so a crash loses only the messages in hand, whose requests get 503 and retry.
"""

from __future__ import annotations

import attrs
import trio

from candlewick.actors._messages import Barrier, FlushItem, Ticket, Work
from candlewick.engine._book import SymbolBook
from candlewick.engine._config import Config
from candlewick.engine._store import Store
from candlewick.errors import SymbolFailed, Unavailable

DRAIN_MAX = 256


class ActorCrashed(Unavailable):
    code = "ACTOR_RESTARTED"


@attrs.define
class MailboxStats:
    depth: int = 0
    peak: int = 0
    capacity: int = 0


class SymbolActor:
    def __init__(self, symbol: str, config: Config, store: Store,
                 mailbox: trio.MemoryReceiveChannel[Work],
                 flusher: trio.MemorySendChannel[FlushItem | Barrier]) -> None:
        self.symbol = symbol
        self.config = config
        self.store = store
        self.mailbox = mailbox
        self.flusher = flusher
        self.book: SymbolBook | None = None

    async def run(self) -> None:
        """One incarnation: barrier, rebuild, then serve the mailbox until it closes."""
        barrier = Barrier(trio.Event())
        await self.flusher.send(barrier)
        await barrier.reached.wait()
        seed = await self.store.load_book(self.symbol, self.config.lateness)
        self.book = SymbolBook(self.symbol, lateness=self.config.lateness, max_keys=self.config.dedupe_max_keys,
                               bars=seed.bars, keys=seed.keys, max_ts=seed.max_ts)
        self.on_ready()
        receive_nowait = self.mailbox.receive_nowait
        async for first in self.mailbox:
            batch = [first]
            try:
                while len(batch) < DRAIN_MAX:
                    batch.append(receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                pass
            try:
                item = self._apply(batch)
                if item is not None:
                    await self.flusher.send(item)
            except BaseException:
                for work in batch:
                    if work.ticket is not None:
                        work.ticket.fail(ActorCrashed(f"the actor for {self.symbol} restarted; retry the request"))
                raise

    def on_ready(self) -> None:
        """Hook for the router's bookkeeping; replaced per actor."""

    def _apply(self, batch: list[Work]) -> FlushItem | None:
        book = self.book
        assert book is not None
        new: list = []
        events: list = []
        tickets: list[tuple[Ticket, int]] = []
        for work in batch:
            applied = book.apply(work.ticks)
            new.extend(applied.new)
            events.extend(applied.events)
            if work.ticket is not None:
                work.ticket.duplicates += applied.duplicates
                work.ticket.skipped += applied.skipped
                tickets.append((work.ticket, len(applied.new)))
        return FlushItem(self.symbol, new, events, tickets)


async def reject_forever(symbol: str, mailbox: trio.MemoryReceiveChannel[Work]) -> None:
    """What a failed actor's mailbox does: answer every waiting request with 503 SYMBOL_FAILED."""
    async for work in mailbox:
        if work.ticket is not None:
            work.ticket.fail(SymbolFailed(f"symbol {symbol} is failed after repeated crashes; see /ops/health/supervisor"))
