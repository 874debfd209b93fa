"""The rows of a lane: each symbol actor's mode, mailbox depth and peak as columns, and one request's part.

A lane's actors are rows of these arrays, so a request is posted, checked for room and taken with a
few array operations, not a Python call per symbol. See docs/ARCHITECTURE.md, "Actors as rows".
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from candlewick.domain import Ticket
from candlewick.errors import Unavailable

RUNNING, STARTING, UNAVAILABLE, FAILED = 0, 1, 2, 3
"""Actor modes, as a row holds them: only RUNNING applies; STARTING keeps its mail waiting
(rebuilding); UNAVAILABLE (store unreadable, between rebuild attempts) and FAILED answer it at once
with their refusal."""

MODE_NAMES = ("running", "starting", "unavailable", "failed")


class RowActor(Protocol):
    """What a lane's dispatcher needs of the actor of a row (``SymbolActor``)."""

    symbol: str

    @property
    def refusal(self) -> Unavailable:
        """The answer for its work while it is unavailable or failed."""

    def rebuild(self) -> None:
        """Its epoch moved: rebuild the book (the row is STARTING now)."""

    def crashed(self, exc: Exception, in_hand: list[Ticket | None]) -> None:
        """Applying its work raised (the row is STARTING now)."""

    def done_with_mail(self) -> None:
        """A pass ran while closing."""


class Part:
    """Router -> a lane: one request's ticks of that lane's symbols, as columns in arrival order.

    Each distinct row is one symbol part of the request's ticket (``urows``)."""

    __slots__ = ("rows", "price", "ts", "volume", "digest", "ticket", "urows")

    def __init__(self, rows: np.ndarray, price: np.ndarray, ts: np.ndarray, volume: np.ndarray, digest: np.ndarray,
                 ticket: Ticket | None, urows: np.ndarray | None = None) -> None:
        self.rows = rows
        """int32 row of each tick's symbol actor."""
        self.price = price
        self.ts = ts
        self.volume = volume
        self.digest = digest
        """(n, 2) uint64 key digests."""
        self.ticket = ticket
        self.urows = np.unique(rows) if urows is None else urows
        """The distinct rows, ascending: the request's symbol parts in this lane."""

    def __len__(self) -> int:
        return len(self.rows)


class RowTable:
    """Per-row columns of a lane's actors (grown by doubling)."""

    __slots__ = ("mode", "depth", "peak", "epoch", "n")

    def __init__(self, capacity: int = 64) -> None:
        self.mode = np.full(capacity, STARTING, dtype=np.int8)
        self.epoch = np.zeros(capacity, dtype=np.int64)
        """The epoch each row's book was rebuilt at (what the flusher checks applied work against)."""
        self.depth = np.zeros(capacity, dtype=np.int32)
        """Request parts waiting per row (its mailbox depth)."""
        self.peak = np.zeros(capacity, dtype=np.int32)
        """Most parts a pass found waiting per row."""
        self.n = 0

    def add(self) -> int:
        """A new row (mode STARTING): its index."""
        if self.n == len(self.mode):
            grow = len(self.mode)
            self.mode = np.concatenate([self.mode, np.full(grow, STARTING, dtype=np.int8)])
            self.depth = np.concatenate([self.depth, np.zeros(grow, dtype=np.int32)])
            self.peak = np.concatenate([self.peak, np.zeros(grow, dtype=np.int32)])
            self.epoch = np.concatenate([self.epoch, np.zeros(grow, dtype=np.int64)])
        self.n += 1
        return self.n - 1

    def has_room(self, urows: np.ndarray, capacity: int) -> bool:
        return len(urows) == 0 or int(self.depth[urows].max()) < capacity

    def post(self, urows: np.ndarray) -> None:
        self.depth[urows] += 1

    def taken(self, urows: np.ndarray) -> None:
        """Parts of these rows (distinct within one part) left the mailbox."""
        d = self.depth[urows]
        self.peak[urows] = np.maximum(self.peak[urows], d)
        self.depth[urows] = d - 1
