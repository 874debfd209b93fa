"""Broadcaster: numbers committed events, keeps a replay buffer, fans out to SSE subscribers.

Reads lists of events from the flusher (bounded channel). Each event is serialised once into
its SSE frame (``id:`` + ``data:``), appended to a bounded replay ring, and pushed to every
matching subscriber's own bounded queue without waiting: a subscriber whose queue is full
has its backlog dropped and is marked for ``resync``, so no subscriber can slow ingest.

Restart policy: none of its own; a crash escalates to the engine (one-for-all).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from itertools import islice

import orjson
import trio

RESYNC = b"event: resync\ndata: {\"reason\":\"%s\"}\n\n"


def num(x: float) -> float | int:
    """Integral floats go out as integers (1730425200, not 1730425200.0), as old clients had."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


def event_json(ev: tuple) -> dict:
    tick, bucket, o, h, l, c, v, sma = ev
    return {"kind": "tick", "symbol": tick.symbol, "price": tick.price, "ts": num(tick.ts),
            "volume": tick.volume, "sma10": sma,
            "candle1m": {"bucket_start": bucket, "ts": bucket, "open": o, "high": h, "low": l,
                         "close": c, "volume": v}}


def event_row(ev: tuple) -> tuple:
    """An event as it crosses the Redis bus: a flat row, made into JSON only where it is sent."""
    tick, bucket, o, h, l, c, v, sma = ev
    return (tick.symbol, tick.price, tick.ts, tick.volume, sma, bucket, o, h, l, c, v)


def row_json(row: list) -> dict:
    symbol, price, ts, volume, sma, bucket, o, h, l, c, v = row
    return {"kind": "tick", "symbol": symbol, "price": price, "ts": num(ts), "volume": volume, "sma10": sma,
            "candle1m": {"bucket_start": bucket, "ts": bucket, "open": o, "high": h, "low": l, "close": c,
                         "volume": v}}


def frame(entry: list) -> bytes:
    """The SSE frame of a replay entry ``[id, symbol, event or row, frame]``, made once."""
    if entry[3] is None:
        ev = entry[2]
        entry[3] = b"id: %d\ndata: %s\n\n" % (entry[0], orjson.dumps(
            event_json(ev) if isinstance(ev, tuple) else row_json(ev)))
    return entry[3]


class Subscriber:
    """One SSE client's queue: bounded, lossy with an explicit resync marker."""

    __slots__ = ("symbols", "capacity", "queue", "resync", "closed", "sent", "dropped", "_wake")

    def __init__(self, symbols: frozenset[str] | None, capacity: int) -> None:
        self.symbols = symbols
        self.capacity = capacity
        self.queue: deque[bytes] = deque()
        self.resync: str | None = None
        self.closed = False
        self.sent = 0
        self.dropped = 0
        self._wake = trio.Event()

    def push(self, frame: bytes) -> None:
        queue = self.queue
        if len(queue) >= self.capacity:
            self.dropped += len(queue) + 1
            queue.clear()
            self.resync = "overflow"
        else:
            queue.append(frame)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def wait(self) -> None:
        await self._wake.wait()

    def take(self) -> bytes:
        """Everything waiting as one write (coalescing), resync marker first."""
        self._wake = trio.Event()
        parts = []
        if self.resync is not None:
            parts.append(RESYNC % self.resync.encode())
            self.resync = None
        n = len(self.queue)
        parts.extend(self.queue)
        self.queue.clear()
        self.sent += n
        return b"".join(parts)


class Broadcaster:
    def __init__(self, inbox: trio.MemoryReceiveChannel[list[tuple]] | None, *, replay: int = 10_000,
                 queue_capacity: int = 1_024, metrics=None) -> None:
        self.inbox = inbox
        self.queue_capacity = queue_capacity
        self.metrics = metrics
        # Ids start at the wall clock in microseconds, so a restarted process issues ids above
        # any a client kept from before, and the gap is detected as a resync.
        self.last_id = time.time_ns() // 1_000
        self.replay: deque[list] = deque(maxlen=replay)
        """[id, symbol, event, frame or None]: frames are made lazily when nobody was listening."""
        self.all: set[Subscriber] = set()
        self.by_symbol: dict[str, set[Subscriber]] = {}
        self.events = 0

    async def run(self) -> None:
        assert self.inbox is not None
        async for events in self.inbox:
            self.publish(events)
        self.close_all()

    def publish(self, events: Iterable[tuple]) -> None:
        dumps = orjson.dumps
        everyone, by_symbol = self.all, self.by_symbol
        append = self.replay.append
        sent = 0
        for ev in events:
            self.last_id += 1
            symbol = ev[0].symbol
            subs = by_symbol.get(symbol) if by_symbol else None
            if everyone or subs:
                frame = b"id: %d\ndata: %s\n\n" % (self.last_id, dumps(event_json(ev)))
                append([self.last_id, symbol, ev, frame])
                for sub in everyone:
                    sub.push(frame)
                if subs:
                    for sub in subs:
                        sub.push(frame)
                    sent += len(subs)
                sent += len(everyone)
            else:
                append([self.last_id, symbol, ev, None])
        self.events += sent

    def publish_encoded(self, first_id: int, body: bytes) -> None:
        """Fan out a batch that came over the Redis bus: ids are the publisher's, the same in
        every process. A jump in ids means batches were missed while the subscription was down:
        the replay no longer covers it, so everyone connected is told to resync."""
        rows = orjson.loads(body)
        if first_id > self.last_id + 1:
            self.discontinuity()
        everyone, by_symbol = self.all, self.by_symbol
        append = self.replay.append
        sent = 0
        for i, row in enumerate(rows):
            eid = first_id + i
            if eid <= self.last_id:
                continue  # already seen (a repeat across a reconnect)
            self.last_id = eid
            symbol = row[0]
            subs = by_symbol.get(symbol) if by_symbol else None
            entry = [eid, symbol, row, None]
            append(entry)
            if everyone or subs:
                data = frame(entry)
                for sub in everyone:
                    sub.push(data)
                if subs:
                    for sub in subs:
                        sub.push(data)
                    sent += len(subs)
                sent += len(everyone)
        self.events += sent

    def discontinuity(self) -> None:
        """Events were lost upstream: forget the replay and resync every subscriber."""
        self.replay.clear()
        for sub in list(self.all) + [s for subs in self.by_symbol.values() for s in subs]:
            sub.resync = "gap"
            sub.queue.clear()
            sub._wake.set()

    def subscribe(self, symbols: frozenset[str] | None, last_event_id: int | None) -> Subscriber:
        """Register a subscriber, pre-filled with the replay after ``last_event_id``.

        Synchronous, so no event can fall between the replay and the live stream.
        """
        sub = Subscriber(symbols, self.queue_capacity)
        if last_event_id is not None and last_event_id != self.last_id:
            first = self.replay[0][0] if self.replay else self.last_id + 1
            if last_event_id > self.last_id or last_event_id < first - 1:
                sub.resync = "gap"
            start = max(0, last_event_id + 1 - first)
            for entry in islice(self.replay, start, None):
                if symbols is None or entry[1] in symbols:
                    sub.push(frame(entry))
        if symbols is None:
            self.all.add(sub)
        else:
            for symbol in symbols:
                self.by_symbol.setdefault(symbol, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.all.discard(sub)
        for symbol in sub.symbols or ():
            subs = self.by_symbol.get(symbol)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self.by_symbol[symbol]

    def close_all(self) -> None:
        for sub in list(self.all):
            sub.close()
        for subs in list(self.by_symbol.values()):
            for sub in list(subs):
                sub.close()

    def subscribers(self) -> int:
        return len(self.all) + len({s for subs in self.by_symbol.values() for s in subs})

    def statistics(self) -> dict[str, int]:
        subs = list(self.all) + list({s for subs in self.by_symbol.values() for s in subs})
        return {"subscribers": len(subs), "last_id": self.last_id, "replay": len(self.replay),
                "events_sent": self.events, "events_dropped": sum(s.dropped for s in subs)}
