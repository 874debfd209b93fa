"""Broadcaster: numbers committed events, keeps them for replay, fans them out to SSE subscribers.

State it owns: the last event id, the replay ring, the shared feed, the subscribers by filter and
the egress. Reads ``Committed`` event lists from the flushers' channel, or with Redis is handed the
bus's batches by the ``Listener`` (``publish_encoded``); writes to the feed and the filtered
subscribers' queues, which the SSE writers take from. Its own nursery runs the egress pump and the
keep-alive ticker. Restart policy: none of its own; a crash escalates to the engine (one-for-all).
See docs/ARCHITECTURE.md, "Fan-out".
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import attrs
import numpy as np
import orjson
import trio

from candlewick.domain import Committed, Event, EventColumns, committed_at
from candlewick.runtime._egress import Egress
from candlewick.runtime._parts import Part, Replay
from candlewick.runtime._subscriber import Feed, Subscriber


@attrs.frozen
class BroadcasterStatistics:
    """What ``Broadcaster.statistics`` reports (on ``/ops/health/supervisor`` and in the metrics)."""

    subscribers: int
    """Subscribers connected now."""
    last_id: int
    """The newest event id (issued here, or the publisher's over the Redis bus)."""
    replay: int
    """Events kept for ``Last-Event-ID`` replay."""
    events_sent: int
    """Events queued to subscribers, all told."""
    events_dropped: int
    """Events dropped from subscribers' backlogs (resyncs), plus those waiting past a bound now;
    subscribers that have left still count, so the figure never goes down."""
    batches: int
    """Batches published, all told."""


class Broadcaster:
    """The hub every SSE stream subscribes to: ``run`` it in a nursery (both with and without an
    inbox: its writers' turns and keep-alives run there)."""

    def __init__(self, inbox: trio.MemoryReceiveChannel[list[Event]] | None, *, replay: int = 10_000,
                 queue_capacity: int = 1_024, metrics=None) -> None:
        self.inbox = inbox
        self.queue_capacity = queue_capacity
        self.metrics = metrics
        # Ids start at the wall clock in microseconds, so a restarted process issues ids above
        # any a client kept from before, and the gap is detected as a resync.
        self.last_id = time.time_ns() // 1_000
        self.replay = Replay(replay)
        """The newest events, as whole parts: a part makes (and keeps) its frames when asked."""
        self.all: set[Subscriber] = set()
        """Subscribers without a filter: they read ``feed``."""
        self.feed = Feed(queue_capacity)
        self.by_symbol: dict[str, set[Subscriber]] = {}
        self.events = 0
        """Events queued to subscribers, all told."""
        self.batches = 0
        self._dropped_by_departed = 0
        """Events dropped from subscribers that have left (``events_dropped`` counts them still)."""
        self.egress = Egress()
        self._keepalive_wanted = trio.Event()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Give the writers their turns and keep-alives; publish what the inbox brings until it is
        closed, then end every stream. Without an inbox (the Redis bus's ``Listener`` calls
        ``publish_encoded``), run until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.egress.run, name="sse-egress")
            nursery.start_soon(self.keep_alive, name="sse-keep-alive")
            task_status.started()
            if self.inbox is not None:
                async for events in self.inbox:
                    self.publish(events)
                self.close_all()
                nursery.cancel_scope.cancel()

    def publish(self, events: Iterable[Event]) -> None:
        """Number a batch of committed events and hand it to the subscribers: per batch, not
        per event; frames are made later, once, from the batch's columns, by the first subscriber
        that takes them."""
        if isinstance(events, Committed):
            cols = events.columns()
        else:
            events = list(events)
            cols = EventColumns.of(events, committed_at(events))
        if len(cols):
            self._publish(Part(self.last_id + 1, cols))

    def _publish(self, part: Part) -> None:
        """Number the batch and keep it for replay: one append, whatever its size (frames are
        made lazily, by ``part``, when a subscriber takes or replays them). With nobody
        listening, this is all a publish does. Then the subscribers get it."""
        self.batches += 1
        self.last_id = part.first + part.n - 1
        self.replay.append(part)
        if self.all or self.by_symbol:
            self._fan_out(part)

    def _fan_out(self, part: Part) -> None:
        sent = 0
        if self.all:
            self.feed.append(part)
            sent = part.n * len(self.all)
        by_symbol = self.by_symbol
        if by_symbol:
            names = part.cols.names
            wanted = [c for c, symbol in enumerate(names) if symbol in by_symbol]
            if wanted:
                sent += self._push_shares(part, _shares(part.cols.codes, names, wanted))
        self.events += sent

    def _push_shares(self, part: Part, shares: dict[str, np.ndarray]) -> int:
        """Each filtered subscriber gets its symbols' events of the batch, in id order; one part
        per distinct filter, shared by the subscribers that have it."""
        by_symbol = self.by_symbol
        merged: dict[frozenset[str], Part] = {}
        served: set[Subscriber] = set()  # subscribers to several symbols, once per batch
        sent = 0
        for symbol, index in shares.items():
            single = None
            for sub in by_symbol[symbol]:
                symbols = sub.symbols
                assert symbols is not None
                if len(symbols) == 1:
                    if single is None:
                        single = part.pick(index)
                    share = single
                elif sub in served:
                    continue
                else:
                    served.add(sub)
                    share = merged.get(symbols)
                    if share is None:
                        share = merged[symbols] = part.pick(np.sort(np.concatenate(
                            [shares[s] for s in symbols if s in shares])))
                sub.push(share, share.n)
                sent += share.n
        return sent

    def publish_encoded(self, first_id: int, body: bytes) -> None:
        """Fan out a batch that came over the Redis bus: ids are the publisher's, the same in
        every process. A jump in ids means batches were missed while the subscription was down:
        the replay no longer covers it, so everyone connected is told to resync."""
        rows = orjson.loads(body)
        if first_id > self.last_id + 1:
            self.discontinuity()
        seen = self.last_id + 1 - first_id
        if seen > 0:  # already seen (a repeat across a reconnect)
            rows = rows[seen:]
            first_id += seen
        if rows:
            self._publish(Part(first_id, EventColumns.of_rows(rows)))

    def _subscribers(self) -> set[Subscriber]:
        return self.all | {s for subs in self.by_symbol.values() for s in subs}

    def discontinuity(self) -> None:
        """Events were lost upstream: forget the replay and resync every subscriber."""
        self.replay.clear()
        for sub in self._subscribers():
            sub.clear("gap")

    def keep_alive_every(self, sub: Subscriber, seconds: float) -> None:
        """Have ``sub``'s writer woken when it wrote nothing for a while (``keep_alive``)."""
        sub.keepalive = seconds
        self._keepalive_wanted.set()

    async def keep_alive(self) -> None:
        """Wake each writer that wrote nothing for three quarters of its ``keepalive``, a quarter
        of the shortest one apart: so it writes at least once per ``keepalive`` without a timeout
        of its own around every wait (a cancel scope per write, at 1,000 subscribers, costs).
        Sleeps without a deadline while no writer wants it (a mock clock is not driven by it)."""
        while True:
            subs = [s for s in self._subscribers() if s.keepalive < math.inf]
            if not subs:
                self._keepalive_wanted = trio.Event()
                await self._keepalive_wanted.wait()
                continue
            await trio.sleep(min(max(min(s.keepalive for s in subs) / 4, 0.01), 1.0))
            now = trio.current_time()
            for sub in subs:
                if now - sub.last_write >= 0.75 * sub.keepalive:
                    sub.wake()

    def subscribe(self, symbols: frozenset[str] | None, last_event_id: int | None) -> Subscriber:
        """Register a subscriber, pre-filled with the replay after ``last_event_id``.

        Synchronous, so no event can fall between the replay and the live stream.
        """
        sub = Subscriber(symbols, self.queue_capacity, self.feed if symbols is None else None)
        if last_event_id is not None and last_event_id != self.last_id:
            first = self.replay.first(self.last_id)
            if last_event_id > self.last_id or last_event_id < first - 1:
                sub.resync = "gap"
            for part in self.replay.after(last_event_id, symbols, self.last_id):
                sub.push(part, part.n)  # past the bound: the newest after a resync, as for live events
        if symbols is None:
            self.all.add(sub)
        else:
            for symbol in symbols:
                self.by_symbol.setdefault(symbol, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        known = sub in self.all
        self.all.discard(sub)
        self.feed.sleeping.discard(sub)
        for symbol in sub.symbols or ():
            subs = self.by_symbol.get(symbol)
            if subs is not None:
                known = known or sub in subs
                subs.discard(sub)
                if not subs:
                    del self.by_symbol[symbol]
        if known:  # what it lost stays counted: events_dropped is a counter, it never goes down
            self._dropped_by_departed += _dropped(sub)

    def close_all(self) -> None:
        for sub in self._subscribers():
            sub.close()

    def subscribers(self) -> int:
        return len(self.all) + len({s for subs in self.by_symbol.values() for s in subs})

    def statistics(self) -> BroadcasterStatistics:
        subs = self._subscribers()
        return BroadcasterStatistics(
            subscribers=len(subs), last_id=self.last_id, replay=self.last_id + 1 - self.replay.first(self.last_id),
            events_sent=self.events, events_dropped=self._dropped_by_departed + sum(map(_dropped, subs)),
            batches=self.batches)


def _shares(codes: np.ndarray, names: list[str], wanted: list[int]) -> dict[str, np.ndarray]:
    """The positions (ascending) of each wanted symbol's events in a batch whose symbols are ``codes``."""
    if len(wanted) <= 4:
        return {names[c]: np.flatnonzero(codes == c) for c in wanted}
    order = np.argsort(codes, kind="stable")
    ends = np.cumsum(np.bincount(codes, minlength=len(names)))
    return {names[c]: order[ends[c - 1] if c else 0:ends[c]] for c in wanted}


def _dropped(sub: Subscriber) -> int:
    """Events a subscriber has lost to resyncs, plus those waiting past its bound now (lost at its next take)."""
    return sub.dropped + max(0, sub.backlog() - sub.capacity)
