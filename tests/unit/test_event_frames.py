"""SSE frames made from a batch's columns are byte for byte those of the reference (``row_json`` + orjson)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candlewick.domain import Committed, Event, EventColumns, event_json, event_row, row_json
from candlewick.runtime._parts import Part
from candlewick.schema import Tick

AWKWARD = [-0.0, 0.0, 1e-7, 5e-324, 1e-4, 0.1, 1.5, 2.0, 1e15, 1e16, 1.2345678901234567e16, 2.0 ** 53 + 2, 2.0 ** 63,
           1e22, 1.7976931348623157e308, 123456789.12345679, 1730425200.0, 1730425200.123, float("nan"), float("inf")]
"""Floats whose JSON text is easy to get wrong: signed zero, exponents, integral, huge, not finite."""

floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(AWKWARD)
times = st.floats(-1e18, 1e18) | st.sampled_from([t for t in AWKWARD if abs(t) < 1e18])  # int(ts) fits in 64 bits
symbols = st.from_regex(r"[A-Za-z0-9.\-_:/]{1,32}", fullmatch=True)
events = st.lists(st.tuples(symbols, floats, times, floats, st.integers(-2 ** 62, 2 ** 62), floats, floats, floats,
                            floats, floats, floats), min_size=1, max_size=30)


def reference(evs: list[Event], first: int, at: float | None) -> list[bytes]:
    return [b"id: %d\ndata: %s\n\n" % (first + i, orjson.dumps(event_json(ev, at))) for i, ev in enumerate(evs)]


def as_events(drawn) -> list[Event]:
    """Events as the flusher made them: SMA10 NaN is None."""
    return [Event(Tick(b"", s, p, t, v), b, o, h, lo, c, bv, None if sma != sma else sma)
            for s, p, t, v, b, sma, o, h, lo, c, bv in drawn]


def as_columns(drawn) -> EventColumns:
    """The same events as the flusher's columns: numpy arrays, symbols coded, SMA10 NaN for none."""
    names = sorted({d[0] for d in drawn})
    codes = np.array([names.index(d[0]) for d in drawn], dtype=np.int32)
    s, p, t, v, b, sma, o, h, lo, c, bv = zip(*drawn, strict=True)
    f = np.float64
    return EventColumns(names, codes, np.array(p, f), np.array(t, f), np.array(v, f), np.array(sma, f),
                        np.array(b, np.int64), np.array(o, f), np.array(h, f), np.array(lo, f), np.array(c, f),
                        np.array(bv, f))


@settings(max_examples=300)
@given(events, st.integers(0, 2 ** 62), st.none() | st.floats(allow_nan=False, allow_infinity=False), st.data())
def test_frames_from_columns_equal_the_reference_bytes(drawn, first, at, data):
    evs, cols = as_events(drawn), as_columns(drawn)
    want = reference(evs, first, at)
    committed = Committed(columns=cols, at=at)
    assert committed.columns().frames(first) == want
    assert repr(list(committed)) == repr(evs)  # the tuples, made only when read (repr: NaN is not NaN)
    start = data.draw(st.integers(0, len(evs) - 1))
    assert cols.frames(first, slice(start, None)) == want[start:]
    index = np.array(sorted(data.draw(st.sets(st.integers(0, len(evs) - 1)))), dtype=np.intp)
    assert cols.frames(first, index) == [want[i] for i in index.tolist()]
    # the bus path: the rows as the publisher sends them, as another process reads them (a commit
    # time is a finite float: a NaN one would become null, and no committedAt, on the way)
    rows = orjson.loads(orjson.dumps(committed.columns().rows()))
    assert rows == orjson.loads(orjson.dumps([event_row(ev, at) for ev in evs]))
    assert EventColumns.of_rows(rows).frames(first) == want


@settings(max_examples=100)
@given(events, st.lists(st.none() | floats, min_size=30, max_size=30), st.data())  # null in the JSON: no committedAt
def test_bus_rows_each_with_its_commit_time_or_none(drawn, ats, data):
    """One bus message holds rows of several commits (and old 11-field rows): each frame has its own."""
    rows = [list(event_row(ev, a)) for ev, a in zip(as_events(drawn), ats, strict=False)]
    rows = [row[:11] if data.draw(st.booleans()) else row for row in orjson.loads(orjson.dumps(rows))]
    want = [b"id: %d\ndata: %s\n\n" % (7 + i, orjson.dumps(row_json(row))) for i, row in enumerate(rows)]
    assert EventColumns.of_rows(rows).frames(7) == want


@pytest.mark.parametrize("value", AWKWARD)
def test_awkward_floats_in_every_field(value):
    drawn = [("A", value, value if abs(value) < 1e18 else 1.5, value, 60, value, value, value, value, value, value)]
    want = reference(as_events(drawn), 1, value)
    assert Committed(columns=as_columns(drawn), at=value).columns().frames(1) == want
    assert Committed(as_events(drawn), at=value).columns().frames(1) == want


def test_a_part_shares_its_frames_with_its_picks_and_tails():
    drawn = [("AB"[i % 2], 1.0 + i, 60.0 + i, 1.0, 60, float("nan"), 1.0, 2.0, 0.5, 1.5, 3.0) for i in range(6)]
    part = Part(100, as_columns(drawn))
    assert part.ids() == list(range(100, 106))
    want = reference(as_events(drawn), 100, None)
    lazy_tail, lazy_pick = part.tail(4), part.pick(np.array([1, 3, 5]))  # before any frame is made
    assert part.data() == b"".join(want)
    assert lazy_tail.frames() == want[2:] and lazy_pick.frames() == want[1::2]
    assert part.tail(3).frames() == want[3:] and part.tail(3).ids() == [103, 104, 105]
    pick = part.pick(np.array([0, 2, 4]))
    assert pick.ids() == [100, 102, 104] and pick.frames() == want[0::2]
    assert pick.tail(2).frames() == want[2::2] and pick.pick(np.array([1])).ids() == [102]
    assert part.tail(4).pick(np.array([0, 3])).frames() == [want[2], want[5]]
