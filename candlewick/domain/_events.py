"""Events, sans-IO: what each new tick produced, and its wire formats (SSE JSON, Redis bus rows)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from candlewick.schema import Tick


class Event(NamedTuple):
    """What applying one new tick produced: the tick, and its minute's bar just after it.

    A tuple: the book makes one per tick, with ``tuple.__new__(Event, ...)`` (no keyword handling)."""

    tick: Tick
    """The tick applied."""
    bucket: int
    """The start of its minute, epoch seconds."""
    open: float
    """The bar's open after this tick (by trade time)."""
    high: float
    """The bar's high after this tick."""
    low: float
    """The bar's low after this tick."""
    close: float
    """The bar's close after this tick (by trade time)."""
    volume: float
    """The bar's volume after this tick."""
    sma10: float | None
    """The mean of the closes of this bar and the 9 before it (None with fewer than 10 bars)."""


class Committed(Sequence):
    """The events of one commit, ``at``: when the commit returned (epoch seconds), and
    ``outbox``: the id of the store's outbox row holding them (None without an outbox).

    Events may be added as a promise (``later``: a function that makes them, and how many there
    are): they become ``Event`` tuples only when first read, so a commit nobody listens to makes no
    object per event."""

    __slots__ = ("at", "outbox", "_items", "_later")

    def __init__(self, events: Iterable[Event] = (), at: float | None = None, outbox: int | None = None) -> None:
        self._items: list[Event] = list(events)
        self._later: list[tuple[Callable[[], list[Event]], int]] = []
        self.at = at
        self.outbox = outbox

    def later(self, make: Callable[[], list[Event]], n: int) -> None:
        """Add the ``n`` events ``make()`` returns, made when first read."""
        if n:
            self._later.append((make, n))

    def extend(self, events: Iterable[Event]) -> None:
        self._events().extend(events)

    def _events(self) -> list[Event]:
        if self._later:
            later, self._later = self._later, []
            for make, _ in later:
                self._items += make()
        return self._items

    def __len__(self) -> int:
        return len(self._items) + sum(n for _, n in self._later)

    def __getitem__(self, index):
        return self._events()[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events())


def committed_at(events: list) -> float | None:
    """The commit time of a list from the flusher (``Committed``); None for a plain list: events
    then go out without ``committedAt`` rather than with a time nobody measured."""
    return getattr(events, "at", None)


def num(x: float) -> float | int:
    """Integral floats go out as integers (1730425200, not 1730425200.0), as old clients had."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


def event_row(ev: Event, committed: float | None = None) -> tuple:
    """An event as it crosses the Redis bus: a flat row, made into JSON only where it is sent.
    The commit time rides last (rows of 11 fields, from before it, are still read)."""
    tick, bucket, o, h, l, c, v, sma = ev
    return (tick.symbol, tick.price, tick.ts, tick.volume, sma, bucket, o, h, l, c, v, committed)


def event_rows(events: list[Event]) -> list[tuple]:
    """A flusher's list as bus rows, each with the list's commit time."""
    at = committed_at(events)
    return [event_row(ev, at) for ev in events]


def row_json(row: list | tuple) -> dict:
    """A bus row (``event_row``) as the JSON object of its SSE frame; ``committedAt`` when the row
    carries a commit time."""
    symbol, price, ts, volume, sma, bucket, o, h, l, c, v = row[:11]
    out = {"kind": "tick", "symbol": symbol, "price": price, "ts": num(ts), "volume": volume, "sma10": sma,
           "candle1m": {"bucket_start": bucket, "ts": bucket, "open": o, "high": h, "low": l, "close": c,
                        "volume": v}}
    if len(row) > 11 and row[11] is not None:
        out["committedAt"] = row[11]
    return out


def event_json(ev: Event, committed: float | None = None) -> dict:
    """An event as the JSON object of its SSE frame: that of its bus row, so both are the same."""
    return row_json(event_row(ev, committed))
