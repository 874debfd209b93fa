"""Relay: committed events to the Redis bus, and from it to this process's broadcaster.

``Publisher`` reads the flushers' committed events (the channel the broadcaster reads without
Redis), publishes everything waiting as one message and deletes the published outbox rows;
``sweep`` publishes the outbox rows a process left behind. ``Listener`` subscribes to the channel
and hands each batch to the broadcaster (``publish_encoded``). Restart policy: none of their own;
both retry Redis faults themselves (the publisher gives a batch up after ``give_up`` seconds), and
anything else escalates to the engine (one-for-all). See docs/ARCHITECTURE.md, "Scale-out over
Redis" (relay) and "Storage" (SSE outbox).
"""

from __future__ import annotations

import orjson
import structlog
import trio

from candlewick.domain import Event, event_rows
from candlewick.errors import BusUnavailable, StoreUnavailable
from candlewick.runtime._broadcaster import Broadcaster

log = structlog.get_logger("candlewick.relay")

SWEEP_ROWS = 64
"""Outbox rows a sweep publishes per message (a short page means the outbox is drained)."""


class Publisher:
    def __init__(self, bus, inbox: trio.MemoryReceiveChannel[list[Event]], *, give_up: float = 10.0,
                 max_events: int = 20_000, store=None, grace: float = 5.0) -> None:
        self.bus = bus
        self.max_events = max_events
        self.inbox = inbox
        self.give_up = give_up
        self.store = store
        """The store whose outbox holds the events until they are published (None: no outbox)."""
        self.grace = grace
        """Outbox rows older than this (seconds) are taken to be orphans of a process that died."""
        self.published = 0
        self.dropped = 0
        self.swept = 0
        """Events published from the outbox rather than by the process that committed them."""

    async def run(self) -> None:
        receive_nowait = self.inbox.receive_nowait
        async for events in self.inbox:
            segments = [(getattr(events, "outbox", None), event_rows(events))]  # each with its commit time
            n = len(segments[0][1])
            try:  # one message for everything the flushers committed meanwhile
                while n < self.max_events:
                    more = receive_nowait()
                    segments.append((getattr(more, "outbox", None), event_rows(more)))
                    n += len(segments[-1][1])
            except (trio.WouldBlock, trio.EndOfChannel):
                pass
            self.published += await self._publish(segments, give_up=self.give_up)

    async def _publish(self, segments: list[tuple[int | None, list]], *, give_up: float | None) -> int:
        """Publish the segments (outbox row id or None, rows) as one message, but for those whose
        outbox row is already out; delete their outbox rows. Returns the events published.
        ``give_up``: seconds of retrying Redis before dropping the events; None: no retry, and
        faults (Redis or the store) raise."""
        marks = [m for m, _ in segments if m is not None]
        delay = 0.05
        deadline = trio.current_time() + (give_up or 0.0)
        sent = 0
        while segments:
            rows = [row for _, part in segments for row in part]
            ids = [m for m, _ in segments if m is not None]
            try:
                reply = await self.bus.publish(len(rows), orjson.dumps(rows), ids)
            except BusUnavailable as exc:
                if give_up is None:
                    raise
                if trio.current_time() + delay > deadline:
                    self.dropped += len(rows)
                    log.error("publish_gave_up", events=len(rows), error=str(exc), kept_in_outbox=len(ids))
                    return sent  # what has an outbox row stays there, for a sweep to publish
                log.warning("publish_failed", retry_in=delay, error=str(exc))
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if isinstance(reply, list):  # some went out already (a sweep): publish the others
                done = {ids[i] for i in reply}
                segments = [seg for seg in segments if seg[0] not in done]
                continue
            sent = len(rows)
            break
        if marks and self.store is not None:
            try:
                await self.store.outbox_delete(marks)
            except StoreUnavailable as exc:  # a row left behind is deleted by a later sweep
                if give_up is None:
                    raise
                log.warning("outbox_delete_failed", rows=len(marks), error=str(exc))
        return sent

    async def sweep(self, older_than: float | None = None) -> int:
        """Publish the outbox rows left ``older_than`` seconds or more (default: ``grace``), oldest
        first: those of a process that died between its commit and its publish. Rows published
        meanwhile by their own process are skipped (the publish script knows them) and deleted.
        Returns the events this sweep published."""
        if self.store is None:
            return 0
        total = 0
        age = self.grace if older_than is None else older_than
        while True:
            pending = await self.store.outbox_pending(age, SWEEP_ROWS)
            if not pending:
                return total
            segments = [(row_id, orjson.loads(payload)) for row_id, payload in pending]
            sent = await self._publish(segments, give_up=None)
            self.swept += sent
            self.published += sent
            total += sent
            if sent:
                log.info("outbox_swept", events=sent, rows=len(pending))
            if len(pending) < SWEEP_ROWS:
                return total

    async def sweep_forever(self) -> None:
        """Every ``grace`` seconds, sweep. Store and Redis faults are retried at the next round."""
        while True:
            await trio.sleep(self.grace)
            try:
                await self.sweep()
            except (BusUnavailable, StoreUnavailable) as exc:
                log.warning("outbox_sweep_failed", error=str(exc))


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
