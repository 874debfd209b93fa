"""Broadcaster: numbers committed events, keeps a replay buffer, fans out to SSE subscribers.

Reads lists of committed events from the flusher (bounded channel; a ``Committed`` list carries
the time its commit returned, which every event carries to clients as ``committedAt``). The
work is per list (a *batch*), never per event and subscriber, so the flusher's hand-off never
waits for long:

- the batch is numbered and kept whole for replay (one ``Part`` per batch in a ring bounded
  in events; a replay entry per event is only made for a client that asks for a replay);
- it is appended, as one shared ``Part``, to the ``Feed`` that every subscriber without a
  filter reads from its own position: O(1) per batch however many of them there are (plus a
  wake-up for each writer that was idle);
- a subscriber with a symbol filter gets that filter's share of the batch pushed into its own
  queue, in id order, grouped once per batch and shared by every subscriber with that filter;
- a part's SSE frames (``id:`` + ``data:``) are made when a subscriber first takes it, and
  joined once: every subscriber writes the same bytes object. A part nobody took before it
  fell out of every bound (below) is never serialised.

Each subscriber's backlog is bounded in events (``queue_capacity``): past the bound it is
dropped, the subscriber is marked for ``resync`` and keeps only the newest events (at most the
bound). Writers take turns (``Egress``) when the server has nothing else to do. No subscriber
can slow ingest or the others.

Restart policy: none of its own; a crash escalates to the engine (one-for-all).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from contextlib import suppress
from operator import itemgetter

import orjson
import trio
import trio.testing

_tick, _symbol = itemgetter(0), itemgetter(1)  # an event's tick, a tick's symbol
_row_symbol = itemgetter(0)  # a bus row's symbol

RESYNC = b"event: resync\ndata: {\"reason\":\"%s\"}\n\n"


def num(x: float) -> float | int:
    """Integral floats go out as integers (1730425200, not 1730425200.0), as old clients had."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


class Committed(list):
    """The events of one commit, ``at``: when the commit returned (epoch seconds), and
    ``outbox``: the id of the store's outbox row holding them (None without an outbox)."""

    __slots__ = ("at", "outbox")

    def __init__(self, events: Iterable[tuple] = (), at: float | None = None, outbox: int | None = None) -> None:
        super().__init__(events)
        self.at = at
        self.outbox = outbox


def committed_at(events: list) -> float | None:
    """The commit time of a list from the flusher (``Committed``); None for a plain list: events
    then go out without ``committedAt`` rather than with a time nobody measured."""
    return getattr(events, "at", None)


def event_json(ev: tuple, committed: float | None = None) -> dict:
    tick, bucket, o, h, l, c, v, sma = ev
    out = {"kind": "tick", "symbol": tick.symbol, "price": tick.price, "ts": num(tick.ts),
           "volume": tick.volume, "sma10": sma,
           "candle1m": {"bucket_start": bucket, "ts": bucket, "open": o, "high": h, "low": l,
                        "close": c, "volume": v}}
    if committed is not None:
        out["committedAt"] = committed
    return out


def event_row(ev: tuple, committed: float | None = None) -> tuple:
    """An event as it crosses the Redis bus: a flat row, made into JSON only where it is sent.
    The commit time rides last (rows of 11 fields, from before it, are still read)."""
    tick, bucket, o, h, l, c, v, sma = ev
    return (tick.symbol, tick.price, tick.ts, tick.volume, sma, bucket, o, h, l, c, v, committed)


def event_rows(events: list) -> list[tuple]:
    """A flusher's list as bus rows, each with the list's commit time."""
    at = committed_at(events)
    return [event_row(ev, at) for ev in events]


def row_json(row: list) -> dict:
    symbol, price, ts, volume, sma, bucket, o, h, l, c, v = row[:11]
    out = {"kind": "tick", "symbol": symbol, "price": price, "ts": num(ts), "volume": volume, "sma10": sma,
           "candle1m": {"bucket_start": bucket, "ts": bucket, "open": o, "high": h, "low": l, "close": c,
                        "volume": v}}
    if len(row) > 11 and row[11] is not None:
        out["committedAt"] = row[11]
    return out


class Part:
    """Events handed to subscribers as one unit, in id order: a whole batch, one filter's share
    of it, or its newest events. Frames are made once, on the first take, and joined once."""

    __slots__ = ("ids", "items", "at", "rows", "n", "end", "_frames", "_data", "_tail")

    def __init__(self, ids: int | list[int], items: list, at: float | None, *, rows: bool = False,
                 frames: list[bytes] | None = None) -> None:
        self.ids = ids
        """The first id when the ids are consecutive, else each event's id."""
        self.items = items
        """Events (tuples from the flusher), or rows (lists from the Redis bus) when ``rows``."""
        self.at = at
        """Commit time of the events (rows carry their own)."""
        self.rows = rows
        self.n = len(items)
        self.end = 0
        """Position after its last event in the ``Feed`` (when it is in one)."""
        self._frames = frames
        self._data: bytes | None = None
        self._tail: Part | None = None

    def frames(self) -> list[bytes]:
        frames = self._frames
        if frames is None:
            ids = self.ids
            if type(ids) is int:
                ids = range(ids, ids + self.n)
            dumps = orjson.dumps
            if self.rows:
                frames = [b"id: %d\ndata: %s\n\n" % (i, dumps(row_json(row))) for i, row in zip(ids, self.items)]
            else:
                at = self.at
                frames = [b"id: %d\ndata: %s\n\n" % (i, dumps(event_json(ev, at))) for i, ev in zip(ids, self.items)]
            self._frames = frames
        return frames

    def frame(self, eid: int) -> bytes:
        ids = self.ids
        return self.frames()[eid - ids if type(ids) is int else ids.index(eid)]

    def data(self) -> bytes:
        """All the frames as one bytes object, made once for every subscriber."""
        data = self._data
        if data is None:
            data = self._data = b"".join(self.frames())
        return data

    def pick(self, index: list[int]) -> Part:
        """The events at these positions (ascending), as a part of their own."""
        first, items, frames = self.ids, self.items, self._frames
        ids = [first + i for i in index] if type(first) is int else [first[i] for i in index]
        return Part(ids, [items[i] for i in index], self.at, rows=self.rows,
                    frames=None if frames is None else [frames[i] for i in index])

    def tail(self, k: int) -> Part:
        """The newest ``k`` events (one part for every subscriber that overflows on this one)."""
        t = self._tail
        if t is None or t.n != k:
            start = self.n - k
            ids = self.ids + start if type(self.ids) is int else self.ids[start:]
            frames = self._frames
            t = self._tail = Part(ids, self.items[start:], self.at, rows=self.rows,
                                  frames=None if frames is None else frames[start:])
        t.end = self.end  # it ends where this one does
        return t


class Replay:
    """The newest ``capacity`` events for ``Last-Event-ID``, kept as the parts they came in
    (consecutive ids): keeping a batch costs one append, not one entry per event. The hub's
    ``last_id`` is the newest id; parts follow it without gaps (a jump is a ``clear``)."""

    __slots__ = ("parts", "capacity")

    def __init__(self, capacity: int) -> None:
        self.parts: deque[Part] = deque()
        self.capacity = capacity

    def append(self, part: Part) -> None:
        parts = self.parts
        parts.append(part)
        oldest = part.ids + part.n - self.capacity  # type: ignore[operator]
        while parts and parts[0].ids + parts[0].n <= oldest:  # type: ignore[operator]
            parts.popleft()

    def clear(self) -> None:
        self.parts.clear()

    def first(self, last_id: int) -> int:
        """The oldest id kept (``last_id + 1`` when none is)."""
        if not self.parts:
            return last_id + 1
        return max(self.parts[0].ids, last_id - self.capacity + 1)  # type: ignore[arg-type]

    def after(self, last_event_id: int, symbols: frozenset[str] | None,
              last_id: int) -> tuple[list[int], list, list[bytes]]:
        """The ids, items and frames of the events kept after ``last_event_id`` (of ``symbols``)."""
        start = max(last_event_id + 1, self.first(last_id))
        ids: list[int] = []
        items: list = []
        frames: list[bytes] = []
        for part in self.parts:
            first = part.ids
            if first + part.n <= start:  # type: ignore[operator]
                continue
            get = _row_symbol if part.rows else _event_symbol
            all_frames = part.frames()
            for i in range(max(0, start - first), part.n):  # type: ignore[operator]
                item = part.items[i]
                if symbols is None or get(item) in symbols:
                    ids.append(first + i)  # type: ignore[operator]
                    items.append(item)
                    frames.append(all_frames[i])
        return ids, items, frames


def _event_symbol(ev: tuple) -> str:
    return ev[0].symbol


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
                sub._wake.set()
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
                 "dropped", "last_write", "keepalive", "_wake", "_turn")

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
        self._wake = trio.Event()
        self._turn: trio.Event | None = None
        """Set when its writer may write (``Egress``)."""

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
        self.closed = True
        self._wake.set()
        if self._turn is not None:
            self._turn.set()

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


class Egress:
    """Turns to write for the SSE writers, so that writing yields to everything else the server
    does: ingest (requests, actors, flushes) always runs first.

    A writer with something to send waits for a turn. Turns are handed out when the event loop
    has nothing else to run (no runnable task, no I/O ready: ``trio.testing.wait_all_tasks_blocked``,
    a public trio API), ``per_idle`` writers at a time, in the order they asked; when the loop
    has not been idle for ``max_wait`` seconds, ``per_busy`` writers go anyway, so a saturated
    server still makes progress. When the server has spare time, subscribers write at once;
    under an ingest flood they wait, their backlogs overflow and they are resynced, and what they
    cost ingest is the publish (O(1) per batch for subscribers without a filter) plus
    ``per_busy`` writes per ``max_wait``: not the CPU of writing every event to every subscriber,
    nor that of the clients reading it (on a shared machine, theirs competes with the server's).
    Keep-alive comments need no turn.
    """

    def __init__(self, *, per_idle: int = 32, per_busy: int = 4, max_wait: float = 1.0) -> None:
        self.per_idle = per_idle
        self.per_busy = per_busy
        self.max_wait = max_wait
        self.waiting: deque[trio.Event] = deque()
        self.turns = 0
        self._wanted = trio.Event()
        self._token: object | None = None

    def start(self) -> None:
        """Start the pump in this trio run (once per run; a system task, so it needs no nursery)."""
        token = trio.lowlevel.current_trio_token()
        if self._token is not token:
            self._token = token
            self.waiting.clear()
            self._wanted = trio.Event()
            trio.lowlevel.spawn_system_task(self._pump, name="sse-egress")

    async def turn(self, sub: Subscriber) -> None:
        """Wait for this writer's turn (or for ``sub`` to be closed)."""
        self.start()
        ev = sub._turn = trio.Event()
        if sub.closed:
            return
        self.waiting.append(ev)
        self._wanted.set()
        try:
            await ev.wait()
        finally:
            sub._turn = None
            if not ev.is_set():  # cancelled while waiting: give the turn to someone else
                with suppress(ValueError):
                    self.waiting.remove(ev)

    async def _pump(self) -> None:
        waiting = self.waiting
        while True:
            await self._wanted.wait()
            turns = self.per_busy
            with trio.move_on_after(self.max_wait):
                await trio.testing.wait_all_tasks_blocked()
                turns = self.per_idle
            for _ in range(min(turns, len(waiting))):
                waiting.popleft().set()
                self.turns += 1
            if not waiting:
                self._wanted = trio.Event()


class Broadcaster:
    def __init__(self, inbox: trio.MemoryReceiveChannel[list[tuple]] | None, *, replay: int = 10_000,
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
        self.egress = Egress()
        self._ticker: object | None = None
        self._keepalive_wanted = trio.Event()

    async def run(self) -> None:
        assert self.inbox is not None
        async for events in self.inbox:
            self.publish(events)
        self.close_all()

    def publish(self, events: Iterable[tuple]) -> None:
        """Number a batch of committed events and hand it to the subscribers: per batch, not
        per event; frames are made later, once, by the first subscriber that takes them."""
        if not isinstance(events, list):
            events = list(events)
        if not events:
            return
        self.batches += 1
        part = Part(self.last_id + 1, events, committed_at(events))
        self._number_unheard(events, part)
        if self.all or self.by_symbol:
            self._fan_out(part, map(_symbol, map(_tick, events)))

    def _number_unheard(self, events: list[tuple], part: Part) -> None:
        """Number the batch and keep it for replay: one append, whatever its size (frames are
        made lazily, by ``part``, when a subscriber takes or replays them). With nobody
        listening, this is all a publish does."""
        self.last_id += len(events)
        self.replay.append(part)

    def _fan_out(self, part: Part, symbols: Iterable[str]) -> None:
        sent = 0
        if self.all:
            self.feed.append(part)
            sent = part.n * len(self.all)
        by_symbol = self.by_symbol
        if by_symbol:
            shares: dict[str, list[int]] = {}
            for i, symbol in enumerate(symbols):
                if symbol in by_symbol:
                    index = shares.get(symbol)
                    if index is None:
                        shares[symbol] = [i]
                    else:
                        index.append(i)
            if shares:
                sent += self._push_shares(part, shares)
        self.events += sent

    def _push_shares(self, part: Part, shares: dict[str, list[int]]) -> int:
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
                        share = merged[symbols] = part.pick(sorted(
                            i for s in symbols for i in shares.get(s, ())))
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
        if not rows:
            return
        self.batches += 1
        part = Part(first_id, rows, None, rows=True)
        self.last_id = first_id + len(rows) - 1
        self.replay.append(part)
        if self.all or self.by_symbol:
            self._fan_out(part, map(_row_symbol, rows))

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
                    sub._wake.set()

    def subscribe(self, symbols: frozenset[str] | None, last_event_id: int | None) -> Subscriber:
        """Register a subscriber, pre-filled with the replay after ``last_event_id``.

        Synchronous, so no event can fall between the replay and the live stream.
        """
        token = trio.lowlevel.current_trio_token()
        if self._ticker is not token:  # once per trio run
            self._ticker = token
            trio.lowlevel.spawn_system_task(self.keep_alive, name="sse-keep-alive")
        sub = Subscriber(symbols, self.queue_capacity, self.feed if symbols is None else None)
        if last_event_id is not None and last_event_id != self.last_id:
            first = self.replay.first(self.last_id)
            if last_event_id > self.last_id or last_event_id < first - 1:
                sub.resync = "gap"
            ids, items, frames = self.replay.after(last_event_id, symbols, self.last_id)
            if len(ids) > sub.capacity:  # past the bound: the newest after a resync, as for live events
                cut = len(ids) - sub.capacity
                sub.dropped += cut
                sub.resync = "overflow"
                ids, items, frames = ids[cut:], items[cut:], frames[cut:]
            if ids:
                sub.push(Part(ids, items, None, frames=frames), len(ids))
        if symbols is None:
            self.all.add(sub)
        else:
            for symbol in symbols:
                self.by_symbol.setdefault(symbol, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.all.discard(sub)
        self.feed.sleeping.discard(sub)
        for symbol in sub.symbols or ():
            subs = self.by_symbol.get(symbol)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self.by_symbol[symbol]

    def close_all(self) -> None:
        for sub in self._subscribers():
            sub.close()

    def subscribers(self) -> int:
        return len(self.all) + len({s for subs in self.by_symbol.values() for s in subs})

    def statistics(self) -> dict[str, int]:
        subs = self._subscribers()
        return {"subscribers": len(subs), "last_id": self.last_id,
                "replay": self.last_id + 1 - self.replay.first(self.last_id),
                "events_sent": self.events,
                "events_dropped": sum(s.dropped + max(0, s.backlog() - s.capacity) for s in subs),
                "batches": self.batches}
