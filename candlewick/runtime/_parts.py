"""Parts: committed events handed out as units with their SSE frames, and the replay ring of them.

A part is a batch's columns and which of its events it holds; its frames are made from the columns
on its first take and shared by every subscriber. See docs/ARCHITECTURE.md, "Fan-out".
"""

from __future__ import annotations

from collections import deque

import numpy as np

from candlewick.domain import EventColumns


class Part:
    """Events handed to subscribers as one unit, in id order: a whole batch, one filter's share
    of it, or its newest events. Frames are made once, on the first take, and joined once."""

    __slots__ = ("first", "cols", "sel", "n", "end", "_frames", "_data", "_tail")

    def __init__(self, first: int, cols: EventColumns, sel: slice | np.ndarray | None = None, *,
                 frames: list[bytes] | None = None) -> None:
        self.first = first
        """The id of the batch's first event (``cols``' position 0): ids are consecutive in a batch."""
        self.cols = cols
        """The whole batch, as columns."""
        self.sel = sel
        """The batch's events this part holds: all (None), the newest from a position on (a
        slice ``start:``), or those at ascending positions (an index array)."""
        self.n = len(cols) if sel is None else len(cols) - sel.start if isinstance(sel, slice) else len(sel)
        self.end = 0
        """Position after its last event in the ``Feed`` (when it is in one)."""
        self._frames = frames
        self._data: bytes | None = None
        self._tail: Part | None = None

    def ids(self) -> list[int]:
        """Each event's id."""
        sel, first = self.sel, self.first
        if sel is None:
            return list(range(first, first + self.n))
        if isinstance(sel, slice):
            return list(range(first + sel.start, first + sel.start + self.n))
        return (sel + first).tolist()

    def frames(self) -> list[bytes]:
        frames = self._frames
        if frames is None:
            frames = self._frames = self.cols.frames(self.first, self.sel)
        return frames

    def data(self) -> bytes:
        """All the frames as one bytes object, made once for every subscriber."""
        data = self._data
        if data is None:
            data = self._data = b"".join(self.frames())
        return data

    def pick(self, index: np.ndarray) -> Part:
        """The events at these positions (ascending), as a part of their own."""
        sel, frames = self.sel, self._frames
        picked = index if sel is None else index + sel.start if isinstance(sel, slice) else sel[index]
        return Part(self.first, self.cols, picked,
                    frames=None if frames is None else [frames[i] for i in index.tolist()])

    def tail(self, k: int) -> Part:
        """The newest ``k`` events (one part for every subscriber that overflows on this one)."""
        t = self._tail
        if t is None or t.n != k:
            start = self.n - k
            sel, frames = self.sel, self._frames
            newest = slice(start, None) if sel is None else slice(sel.start + start, None) \
                if isinstance(sel, slice) else sel[start:]
            t = self._tail = Part(self.first, self.cols, newest, frames=None if frames is None else frames[start:])
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
        """Keep a whole batch (``part.sel`` is None)."""
        parts = self.parts
        parts.append(part)
        oldest = part.first + part.n - self.capacity
        while parts and parts[0].first + parts[0].n <= oldest:
            parts.popleft()

    def clear(self) -> None:
        self.parts.clear()

    def first(self, last_id: int) -> int:
        """The oldest id kept (``last_id + 1`` when none is)."""
        if not self.parts:
            return last_id + 1
        return max(self.parts[0].first, last_id - self.capacity + 1)

    def after(self, last_event_id: int, symbols: frozenset[str] | None, last_id: int) -> list[Part]:
        """The events kept after ``last_event_id`` (of ``symbols``), as parts of the batches they
        came in; filtered by the symbol column, frames shared with the batches'."""
        start = max(last_event_id + 1, self.first(last_id))
        out: list[Part] = []
        for part in self.parts:
            skip = start - part.first
            if skip >= part.n:
                continue
            if symbols is None:
                out.append(part.tail(part.n - skip) if skip > 0 else part)
                continue
            cols = part.cols
            wanted = [c for c, s in enumerate(cols.names) if s in symbols]
            if wanted:
                index = np.flatnonzero(np.isin(cols.codes, wanted))
                index = index[index >= skip] if skip > 0 else index
                if len(index):
                    out.append(part.pick(index))
        return out
