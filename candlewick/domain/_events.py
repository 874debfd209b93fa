"""Events, sans-IO: what each new tick produced, as columns and as tuples, and its wire formats (SSE, Redis bus rows).

A committed batch's events travel as columns (``EventColumns``) from the flusher to the broadcaster,
which makes their SSE frames from the columns in one pass (``EventColumns.frames``); an ``Event``
tuple per event is made only where something reads the events one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from typing import NamedTuple

import numpy as np
import orjson

from candlewick.schema import Tick


class Event(NamedTuple):
    """What applying one new tick produced: the tick, and its minute's bar just after it."""

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


VALUES = ("price", "ts", "volume", "sma", "bucket", "open", "high", "low", "close", "bar_volume")
"""The value columns of ``EventColumns``, in bus-row order (after the symbol)."""

_FRAME = (b'id: %d\ndata: {"kind":"tick","symbol":%s,"price":%s,"ts":%s,"volume":%s,"sma10":%s,"candle1m":'
          b'{"bucket_start":%s,"ts":%s,"open":%s,"high":%s,"low":%s,"close":%s,"volume":%s}%s}\n\n')
"""One SSE frame: ``row_json`` as orjson writes it, with each value's JSON text put in."""


class EventColumns:
    """Events as columns, in id order: each event's symbol (``codes`` into ``names``), its tick's
    ``price``, ``ts``, ``volume``, its SMA10 (``sma``; NaN or None for none), and its minute's bar
    just after it (``bucket``, ``open``, ``high``, ``low``, ``close``, ``bar_volume``).

    The value columns are numpy arrays (from the flusher) or lists (bus rows, as the JSON had them;
    ``Event`` tuples). ``at``: the commit time (None: unknown), or a list of one per event (bus rows)."""

    __slots__ = ("names", "codes", *VALUES, "at", "_symbol_texts")

    def __init__(self, names: list[str], codes: np.ndarray, *values: Sequence, at=None) -> None:
        self.names = names
        self.codes = codes
        (self.price, self.ts, self.volume, self.sma, self.bucket,
         self.open, self.high, self.low, self.close, self.bar_volume) = values
        self.at = at
        self._symbol_texts: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.codes)

    @classmethod
    def of(cls, events: Iterable[Event], at: float | None = None) -> EventColumns:
        """``Event`` tuples as columns, their values as the tuples have them."""
        return cls.of_rows([event_row(ev, at) for ev in events])

    @classmethod
    def of_rows(cls, rows: list) -> EventColumns:
        """Bus rows (``event_row``; of 11 fields from before the commit time, or 12) as columns,
        their values as the JSON had them."""
        index: dict[str, int] = {}
        codes = np.fromiter((index.setdefault(row[0], len(index)) for row in rows), np.int32, len(rows))
        values = [[row[i] for row in rows] for i in range(1, 11)]
        at = [row[11] if len(row) > 11 else None for row in rows]
        return cls(list(index), codes, *values, at=at if any(a is not None for a in at) else None)

    def symbols(self) -> list[str]:
        """Each event's symbol."""
        names = self.names
        return [names[c] for c in self.codes.tolist()]

    def lists(self, sel=None) -> list[list]:
        """The value columns as lists (of the events at ``sel``: a slice or index array, or all)."""
        out = []
        for name in VALUES:
            col = getattr(self, name)
            if isinstance(col, np.ndarray):
                out.append((col if sel is None else col[sel]).tolist())
            elif sel is None or isinstance(sel, slice):
                out.append(col if sel is None else col[sel])
            else:
                out.append([col[i] for i in sel.tolist()])
        return out

    def commit_times(self, sel=None) -> list | None:
        """The commit time of each event (at ``sel``), or None when all share ``at``."""
        at = self.at
        if not isinstance(at, list):
            return None
        return at if sel is None else at[sel] if isinstance(sel, slice) else [at[i] for i in sel.tolist()]

    def rows(self) -> list[tuple]:
        """The events as bus rows (``event_row``), each with the commit time."""
        price, ts, volume, sma, *rest = self.lists()
        sma = [None if s != s else s for s in sma]
        at = self.commit_times()
        return list(zip(self.symbols(), price, ts, volume, sma, *rest, repeat(self.at) if at is None else at,
                        strict=False))

    def events(self) -> list[Event]:
        """One ``Event`` per event (SMA10 NaN as None)."""
        price, ts, volume, sma, bucket, o, h, lo, c, v = self.lists()
        smas = [None if s != s else s for s in sma]
        new = tuple.__new__
        return [new(Event, (Tick(b"", s, p, t, vo), *rest)) for s, p, t, vo, *rest
                in zip(self.symbols(), price, ts, volume, bucket, o, h, lo, c, v, smas, strict=True)]

    def frames(self, first_id: int, sel=None) -> list[bytes]:
        """The SSE frames (``id:`` + ``data:``) of the events at ``sel`` (all by default), the
        event at position i numbered ``first_id + i``: the bytes ``row_json`` and orjson give, made
        per column (one orjson call each) and one format per event."""
        if sel is None:
            n = len(self)
            ids: Iterable[int] = range(first_id, first_id + n)
            codes = self.codes
        elif isinstance(sel, slice):
            positions = range(len(self))[sel]
            n, ids, codes = len(positions), range(first_id + positions.start, first_id + positions.stop), self.codes[sel]
        else:
            n, ids, codes = len(sel), (sel + first_id).tolist(), self.codes[sel]
        if not n:
            return []
        price, ts, volume, sma, bucket, o, h, lo, c, v = self.lists(sel)
        names = self._symbol_texts
        if names is None:  # once per batch, for all its parts
            names = self._symbol_texts = np.array([orjson.dumps(s) for s in self.names], dtype=object)
        texts = [_texts(col) for col in (price, _num(ts), volume, sma, bucket, o, h, lo, c, v)]
        return [_FRAME % f for f in zip(ids, names[codes].tolist(), *texts[:5], texts[4], *texts[5:],
                                        _committed(self.at, self.commit_times(sel)), strict=False)]


def _texts(values: list) -> list[bytes]:
    """Each value's JSON text, as orjson writes it (one call for the list; no value's text holds a comma)."""
    return orjson.dumps(values)[1:-1].split(b",")


def _num(ts: list) -> list:
    """``num`` of each."""
    return [int(t) if type(t) is float and t.is_integer() else t for t in ts]


def _committed(at: float | None, each: list | None) -> Iterable[bytes]:
    """Each event's ``committedAt`` member (with its comma), or nothing: ``at`` for all, or ``each``'s."""
    if each is not None:
        return [b"" if a is None else b',"committedAt":' + t for a, t in zip(each, _texts(each), strict=True)]
    return repeat(b"" if at is None else b',"committedAt":' + orjson.dumps(at))


class Committed(Sequence):
    """The events of one commit, as columns; ``at``: when the commit returned (epoch seconds), and
    ``outbox``: the id of the store's outbox row holding them (None without an outbox).

    Read as a sequence, it makes its ``Event`` tuples (once, when first read): a commit whose
    events only go out as SSE frames or bus rows makes no object per event."""

    __slots__ = ("at", "outbox", "_columns", "_events")

    def __init__(self, events: Iterable[Event] = (), at: float | None = None, outbox: int | None = None, *,
                 columns: EventColumns | None = None) -> None:
        self._events: list[Event] | None = None
        if columns is None:
            self._events = list(events)
            columns = EventColumns.of(self._events)
        self._columns = columns
        self.at = at
        self.outbox = outbox

    def columns(self) -> EventColumns:
        """Its events as columns, with its commit time."""
        columns = self._columns
        columns.at = self.at
        return columns

    def _list(self) -> list[Event]:
        events = self._events
        if events is None:
            events = self._events = self._columns.events()
        return events

    def __len__(self) -> int:
        return len(self._columns)

    def __getitem__(self, index):
        return self._list()[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self._list())


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
    """A flusher's list as bus rows, each with the list's commit time (from the columns of a ``Committed``)."""
    if isinstance(events, Committed):
        return events.columns().rows()
    at = committed_at(events)
    return [event_row(ev, at) for ev in events]


def row_json(row: list | tuple) -> dict:
    """A bus row (``event_row``) as the JSON object of its SSE frame; ``committedAt`` when the row
    carries a commit time. The reference for ``EventColumns.frames``, which writes the same bytes."""
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
