"""Relay: committed events to the Redis bus, and from it to this process's broadcaster.

With ``REDIS_URL`` set, every process (roles all, worker, gateway) serves SSE from the bus:

- ``Publisher`` reads the flusher's committed events (the same bounded channel the broadcaster
  reads without Redis), numbers and publishes them once (``RedisBus.publish``), everything
  waiting in one message, so one round trip serves many flushes. While
  Redis is down it retries with backoff, so the flusher, and through it ingest, slows down;
  after ``give_up`` seconds a batch is dropped (its ticks are committed; live subscribers
  resync) rather than stalling ingest for ever.
- ``Listener`` subscribes to the channel and hands each batch to the broadcaster with the
  publisher's ids; when the subscription breaks it reconnects, and the broadcaster resyncs its
  subscribers on the jump in ids.

Restart policy: none of their own; both retry Redis faults themselves, and anything else
escalates to the engine (one-for-all).
"""

from __future__ import annotations

import orjson
import structlog
import trio

from candlewick.actors._broadcaster import Broadcaster, event_rows
from candlewick.errors import BusUnavailable

log = structlog.get_logger("candlewick.relay")


class Publisher:
    def __init__(self, bus, inbox: trio.MemoryReceiveChannel[list[tuple]], *, give_up: float = 10.0,
                 max_events: int = 20_000) -> None:
        self.bus = bus
        self.max_events = max_events
        self.inbox = inbox
        self.give_up = give_up
        self.published = 0
        self.dropped = 0

    async def run(self) -> None:
        receive_nowait = self.inbox.receive_nowait
        async for events in self.inbox:
            rows = event_rows(events)  # each with its commit time
            try:  # one message for everything the flushers committed meanwhile
                while len(rows) < self.max_events:
                    rows += event_rows(receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                pass
            payload = orjson.dumps(rows)
            delay = 0.05
            deadline = trio.current_time() + self.give_up
            while True:
                try:
                    await self.bus.publish(len(rows), payload)
                    self.published += len(rows)
                    break
                except BusUnavailable as exc:
                    if trio.current_time() + delay > deadline:
                        self.dropped += len(rows)
                        log.error("publish_gave_up", events=len(rows), error=str(exc))
                        break
                    log.warning("publish_failed", retry_in=delay, error=str(exc))
                    await trio.sleep(delay)
                    delay = min(delay * 2, 1.0)


class Listener:
    def __init__(self, bus, hub: Broadcaster, *, wait: float = 1.0) -> None:
        self.bus = bus
        self.hub = hub
        self.wait = wait
        self.connected = False
        self.reconnects = 0

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        started = False
        delay = 0.1
        while True:
            ps = None
            try:
                ps = await self.bus.open_subscription()
                if self.connected is False and started:
                    self.reconnects += 1
                    log.info("bus_resubscribed")
                self.connected = True
                delay = 0.1
                if not started:
                    started = True
                    task_status.started()
                while True:
                    msg = await self.bus.next_message(ps, self.wait)
                    if msg is not None:
                        self.hub.publish_encoded(*msg)
            except BusUnavailable as exc:
                self.connected = False
                log.warning("bus_subscription_lost", error=str(exc), retry_in=delay)
                if not started:  # the engine starts anyway; readiness shows redis: fail
                    started = True
                    task_status.started()
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                if ps is not None:
                    with trio.move_on_after(1, shield=True):
                        await self.bus.close_subscription(ps)
