"""Subscribers: each SSE client's backlog, bounded in events, and the shared feed unfiltered ones read.

See docs/ARCHITECTURE.md, "Fan-out" (subscribers).
"""

from __future__ import annotations

import math
from collections import deque

import trio

from candlewick.runtime._parts import Part

RESYNC = b"event: resync\ndata: {\"reason\":\"%s\"}\n\n"


class Feed:
    """The recent parts every subscriber without a filter reads from: one shared log, so a
    publish costs the same for 1 or 10,000 of them. Positions count events since the start;
    the log keeps the parts holding the newest ``capacity`` events, all a reader may still need."""

    __slots__ = ("log", "end", "capacity", "sleeping")

    def __init__(self, capacity: int) -> None:
        self.log: deque[Part] = deque()
        self.end = 0
        """Events appended, all told: the position after the newest."""
        self.capacity = capacity
        self.sleeping: set[Subscriber] = set()
        """Readers whose writers wait for news."""

    def append(self, part: Part) -> None:
        self.end += part.n
        part.end = self.end
        log = self.log
        log.append(part)
        oldest = self.end - self.capacity
        while log[0].end <= oldest:
            log.popleft()
        if self.sleeping:
            for sub in self.sleeping:
                sub._wake.set()  # same module: the hot path of a publish skips a method call
            self.sleeping.clear()

    def since(self, start: int) -> list[Part]:
        """The parts holding the events after position ``start`` (within the newest ``capacity``)."""
        parts = []
        for part in reversed(self.log):
            if part.end <= start:
                break
            parts.append(part)
        parts.reverse()
        first = parts[0]
        if first.end - first.n < start:
            parts[0] = first.tail(first.end - start)
        return parts


class Subscriber:
    """One SSE client's queue: bounded in events, lossy with an explicit resync marker.

    A subscriber without a filter reads the hub's shared ``Feed`` from its own position
    (``cursor``); one with a filter gets its shares pushed into its own ``queue`` (as do the
    replayed frames of either). The bound counts both: past it, the backlog is dropped, the
    subscriber is marked for resync and keeps the newest events (at most ``capacity``)."""

    __slots__ = ("symbols", "capacity", "feed", "cursor", "queue", "queued", "resync", "closed", "sent",
                 "dropped", "last_write", "keepalive", "turn", "_wake")

    def __init__(self, symbols: frozenset[str] | None, capacity: int, feed: Feed | None = None) -> None:
        self.symbols = symbols
        self.capacity = capacity
        self.feed = feed
        self.cursor = feed.end if feed is not None else 0
        """Position in ``feed`` up to which this subscriber has taken."""
        self.queue: deque[Part] = deque()
        self.queued = 0
        """Events waiting in ``queue``."""
        self.resync: str | None = None
        self.closed = False
        self.sent = 0
        self.dropped = 0
        self.last_write = -math.inf
        """When the writer last wrote (trio clock): its coalescing window and keep-alives."""
        self.keepalive = math.inf
        """Its writer wants a wake-up when it wrote nothing for this long (``Broadcaster.keep_alive``)."""
        self.turn: trio.Event | None = None
        """While its writer waits for a turn (``Egress.turn``): set when the turn comes, or on close."""
        self._wake = trio.Event()

    def backlog(self) -> int:
        """Events waiting (before the bound is applied)."""
        return self.queued + (self.feed.end - self.cursor if self.feed is not None else 0)

    def pending(self) -> bool:
        return bool(self.queue) or self.resync is not None or (self.feed is not None and self.feed.end > self.cursor)

    def push(self, part: Part, n: int) -> None:
        """Queue ``n`` events; past the bound, drop the oldest, mark resync: the newest stay."""
        excess = self.queued + n - self.capacity
        if excess > 0:
            if n > self.capacity:
                part = part.tail(self.capacity)
                n = self.capacity
            self._drop_oldest(excess, n)
        self.queue.append(part)
        self.queued += n
        self._wake.set()

    def _drop_oldest(self, excess: int, keep: int) -> None:
        """Over the bound by ``excess`` events, ``keep`` of the newest coming after ``queue``:
        drop the oldest (first from ``queue``), and mark resync."""
        self.resync = "overflow"
        self.dropped += excess
        queue = self.queue
        if keep >= self.capacity:
            queue.clear()
            self.queued = 0
            return
        excess = self.queued + keep - self.capacity
        while excess > 0:
            head = queue[0]
            if head.n <= excess:
                queue.popleft()
                excess -= head.n
                self.queued -= head.n
            else:
                queue[0] = head.tail(head.n - excess)
                self.queued -= excess
                excess = 0

    def clear(self, reason: str) -> None:
        """Drop everything waiting and mark resync."""
        self.dropped += self.backlog()
        self.queue.clear()
        self.queued = 0
        if self.feed is not None:
            self.cursor = self.feed.end
        self.resync = reason
        self._wake.set()

    def close(self) -> None:
        """End the stream: its writer wakes (from ``wait`` or a wait for its turn) and returns."""
        self.closed = True
        self._wake.set()
        if self.turn is not None:
            self.turn.set()

    def wake(self) -> None:
        """Wake its writer (a keep-alive may be due)."""
        self._wake.set()

    async def wait(self) -> None:
        feed = self.feed
        if feed is None:
            await self._wake.wait()
            return
        feed.sleeping.add(self)
        try:
            await self._wake.wait()
        finally:
            feed.sleeping.discard(self)

    def take(self) -> bytes:
        """Everything waiting as one write (coalescing), resync marker first: one part's shared
        bytes as they are, several joined."""
        if self._wake.is_set():
            self._wake = trio.Event()
        queue, feed = self.queue, self.feed
        live = 0
        if feed is not None and feed.end > self.cursor:
            live = feed.end - self.cursor
            excess = self.queued + live - self.capacity
            if excess > 0:  # past the bound: the newest events, after a resync
                live = min(live, self.capacity)
                self._drop_oldest(excess, live)
        parts = []
        if self.resync is not None:
            parts.append(RESYNC % self.resync.encode())
            self.resync = None
        parts.extend(part.data() for part in queue)
        if live:
            parts.extend(part.data() for part in feed.since(feed.end - live))  # type: ignore[union-attr]
            self.cursor = feed.end  # type: ignore[union-attr]
        queue.clear()
        self.sent += self.queued + live
        self.queued = 0
        return parts[0] if len(parts) == 1 else b"".join(parts)
