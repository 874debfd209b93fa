"""Parts: committed events handed out as units with their SSE frames, and the replay ring of them.

A part's frames are made on its first take and shared by every subscriber; see
docs/ARCHITECTURE.md, "Fan-out".
"""

from __future__ import annotations

from collections import deque
from operator import attrgetter, itemgetter

import orjson

from candlewick.domain import event_json, row_json

event_symbol = attrgetter("tick.symbol")
"""An ``Event``'s symbol."""
row_symbol = itemgetter(0)
"""A bus row's symbol."""


class Part:
    """Events handed to subscribers as one unit, in id order: a whole batch, one filter's share
    of it, or its newest events. Frames are made once, on the first take, and joined once."""

    __slots__ = ("ids", "items", "at", "rows", "n", "end", "_frames", "_data", "_tail")

    def __init__(self, ids: int | list[int], items: list, at: float | None, *, rows: bool = False,
                 frames: list[bytes] | None = None) -> None:
        self.ids = ids
        """The first id when the ids are consecutive, else each event's id."""
        self.items = items
        """Events (``Event`` from the flusher), or rows (lists from the Redis bus) when ``rows``."""
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
            get = row_symbol if part.rows else event_symbol
            all_frames = part.frames()
            for i in range(max(0, start - first), part.n):  # type: ignore[operator]
                item = part.items[i]
                if symbols is None or get(item) in symbols:
                    ids.append(first + i)  # type: ignore[operator]
                    items.append(item)
                    frames.append(all_frames[i])
        return ids, items, frames
