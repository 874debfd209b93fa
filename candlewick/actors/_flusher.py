"""Flusher: commits what the symbol actors applied, then acknowledges and publishes it.

Reads ``FlushItem``/``Barrier`` from one bounded channel (the backpressure in front of the
store). Group commit: it takes what is waiting (up to ``flush_max_ticks``) and writes it in
one store call, so under load batches grow by themselves and when idle a lone request is
written at once, with no linger. After a commit it marks tickets committed and sends the
events to the broadcaster, so subscribers only ever see committed ticks. A failed write is
retried with backoff; the tickets waiting on it time out as 503 on their own deadline.

Restart policy: none of its own; a crash escalates to the engine (one-for-all).
"""

from __future__ import annotations

import time

import structlog
import trio

from candlewick.actors._messages import Barrier, FlushItem
from candlewick.engine._store import Store

log = structlog.get_logger("candlewick.flusher")


class Flusher:
    def __init__(self, store: Store, inbox: trio.MemoryReceiveChannel[FlushItem | Barrier],
                 outbox: trio.MemorySendChannel[list[tuple]], *, max_ticks: int = 5_000, metrics=None,
                 retry_initial: float = 0.05, retry_max: float = 2.0) -> None:
        self.store = store
        self.inbox = inbox
        self.outbox = outbox
        self.max_ticks = max_ticks
        self.metrics = metrics
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.flushes = 0
        self.ticks_written = 0
        self.last_batch = 0
        self.failures = 0

    async def run(self) -> None:
        receive_nowait = self.inbox.receive_nowait
        async with self.outbox:
            async for first in self.inbox:
                batch = [first]
                n = len(first.ticks) if isinstance(first, FlushItem) else 0
                try:
                    while n < self.max_ticks:
                        item = receive_nowait()
                        batch.append(item)
                        if isinstance(item, FlushItem):
                            n += len(item.ticks)
                except (trio.WouldBlock, trio.EndOfChannel):
                    pass
                await self._flush(batch, n)

    async def _flush(self, batch: list[FlushItem | Barrier], n: int) -> None:
        writes: dict[str, list] = {}
        for item in batch:
            if isinstance(item, FlushItem) and item.ticks:
                lst = writes.get(item.symbol)
                if lst is None:
                    writes[item.symbol] = list(item.ticks)
                else:
                    lst.extend(item.ticks)
        if writes:
            started = time.perf_counter()
            await self._write_with_retry(writes)
            if self.metrics is not None:
                self.metrics.flush(n, time.perf_counter() - started)
        self.flushes += 1
        self.ticks_written += n
        self.last_batch = n
        events: list[tuple] = []
        for item in batch:
            if isinstance(item, Barrier):
                item.reached.set()
                continue
            events.extend(item.events)
            for ticket, accepted in item.tickets:
                ticket.part_committed(accepted)
        if events:
            await self.outbox.send(events)

    async def _write_with_retry(self, writes: dict[str, list]) -> None:
        delay = self.retry_initial
        while True:
            try:
                await self.store.write(writes)
                return
            except Exception as exc:  # noqa: BLE001 - store faults are retried; Cancelled passes
                self.failures += 1
                log.warning("flush_failed", error=f"{type(exc).__name__}: {exc}", retry_in=delay,
                            ticks=sum(len(v) for v in writes.values()))
                await trio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
