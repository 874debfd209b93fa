"""Flusher: commits what the symbol actors applied, then acknowledges and publishes it.

State it owns: its lane's receive end and its counters (``statistics()``). Reads ``FlushItem`` and
``Barrier`` from its lane (one bounded channel, fed by the lane's dispatcher); writes each group
commit to the store in one transaction, then resolves or fails the tickets (bumping the epochs of
the symbols it drops) and sends the commit's events to the broadcaster, or with Redis to the
publisher. Restart policy: none of its own; store faults are retried for ``retry_window`` seconds,
anything else escalates to the engine (one-for-all). See docs/ARCHITECTURE.md, "One tick, from the
POST to the SSE client" (step 7) and "Backpressure rules".
"""

from __future__ import annotations

import time

import attrs
import orjson
import structlog
import trio

from candlewick.domain import Committed, Event
from candlewick.errors import StoreUnavailable
from candlewick.runtime._messages import Barrier, Epochs, FlushItem
from candlewick.schema import TickColumns
from candlewick.storage import Store

log = structlog.get_logger("candlewick.flusher")


@attrs.frozen
class FlusherStatistics:
    """One flusher (one lane) as the supervision tree shows it."""

    flushes: int
    """Store writes committed, all told."""
    ticks_written: int
    """Ticks those writes committed."""
    last_batch: int
    """Ticks in the newest committed write."""
    failures: int
    """Store writes that raised (each retried until the retry window ends)."""
    dropped_ticks: int
    """Applied ticks never written: their requests were answered 503 and their actors rebuilt."""
    store_ok: bool
    """The newest write succeeded."""
    depth: int
    """Items (dispatcher passes, barriers) waiting in the lane now."""
    capacity: int
    """The lane's bound: a full lane makes its dispatcher wait."""


class Flusher:
    def __init__(self, store: Store, inbox: trio.MemoryReceiveChannel[FlushItem | Barrier],
                 outbox: trio.MemorySendChannel[list[Event]], epochs: Epochs, *, max_ticks: int = 5_000,
                 retry_window: float = 10.0, metrics=None, retry_initial: float = 0.05,
                 retry_max: float = 1.0, write_outbox: bool = False) -> None:
        self.store = store
        self.inbox = inbox
        self.outbox = outbox
        self.epochs = epochs
        self.max_ticks = max_ticks
        self.retry_window = retry_window
        self.metrics = metrics
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.use_outbox = write_outbox
        self.flushes = 0
        self.ticks_written = 0
        self.last_batch = 0
        self.failures = 0
        self.dropped = 0
        self.store_ok = True

    def statistics(self) -> FlusherStatistics:
        lane = self.inbox.statistics()
        return FlusherStatistics(self.flushes, self.ticks_written, self.last_batch, self.failures, self.dropped,
                                 self.store_ok, lane.current_buffer_used, int(lane.max_buffer_size))

    async def run(self) -> None:
        receive_nowait = self.inbox.receive_nowait
        async with self.outbox:
            async for first in self.inbox:
                batch = [first]
                n = first.n if isinstance(first, FlushItem) else 0
                try:
                    while n < self.max_ticks:
                        item = receive_nowait()
                        batch.append(item)
                        if isinstance(item, FlushItem):
                            n += item.n
                except (trio.WouldBlock, trio.EndOfChannel):
                    pass
                await self._flush(batch)

    def _drop(self, item: FlushItem, error: StoreUnavailable) -> None:
        """Forget an item unwritten: its requests fail, its actors rebuild."""
        self.dropped += item.drop(self.epochs, error)

    async def _flush(self, batch: list[FlushItem | Barrier]) -> None:
        items: list[FlushItem] = []
        epochs = self.epochs
        stale = StoreUnavailable("the request expired before its ticks were written; retry it")
        for item in batch:
            if isinstance(item, Barrier):
                continue
            self.dropped += item.screen(epochs, stale)  # stale epochs, expired requests: not written
            if item.live:
                item.claim()
                items.append(item)
        n = sum(item.n for item in items)
        writes = FlushItem.columns(items) if n else None
        committed = True
        events = Committed()
        if writes:
            events = Committed(columns=FlushItem.event_columns(items, writes))  # no object per event
            outbox = orjson.dumps(events.columns().rows()) if self.use_outbox else None
            started = time.perf_counter()
            committed = await self._write_with_retry(writes, n, outbox, events)
            if committed and self.metrics is not None:
                self.metrics.flush(n, time.perf_counter() - started)
        if committed:
            events.at = time.time()  # goes out with each event as committedAt
            self.flushes += 1
            self.ticks_written += n
            self.last_batch = n
            for item in items:
                item.commit()
        else:
            error = StoreUnavailable(f"the store did not commit within {self.retry_window:g}s; nothing of this "
                                     "request was applied, retry it")
            for item in items:
                self._drop(item, error)
        for item in batch:
            if isinstance(item, Barrier):
                item.reached.set()
        if committed and events:
            await self.outbox.send(events)

    async def _write_with_retry(self, writes: TickColumns, n: int, outbox: bytes | None,
                                events: Committed) -> bool:
        delay = self.retry_initial
        give_up_at = trio.current_time() + self.retry_window
        while True:
            try:
                with trio.fail_after(max(0.1, give_up_at - trio.current_time())):
                    if outbox is None:
                        await self.store.write(writes)
                    else:
                        events.outbox = await self.store.write(writes, outbox=outbox)
                if not self.store_ok:
                    log.info("store_recovered")
                self.store_ok = True
                return True
            except (Exception, trio.TooSlowError) as exc:  # noqa: BLE001 - store faults are retried; Cancelled passes
                self.failures += 1
                self.store_ok = False
                now = trio.current_time()
                if now + delay >= give_up_at:
                    log.error("flush_gave_up", error=f"{type(exc).__name__}: {exc}", ticks=n,
                              window=self.retry_window)
                    return False
                log.warning("flush_failed", error=f"{type(exc).__name__}: {exc}", retry_in=delay, ticks=n)
                await trio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
