"""The SSE replay ring: whole batches kept, the newest ``capacity`` events served after an id."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from candlewick.domain import EventColumns
from candlewick.runtime._parts import Part, Replay


def rows(first: int, n: int) -> list[list]:
    """Bus rows whose price is their id, symbols A/B/C by id."""
    return [["ABC"[(first + i) % 3], float(first + i), 1.0, 1.0, None, 0, 1, 1, 1, 1, 1, None] for i in range(n)]


def fill(sizes: list[int], capacity: int, first: int = 1000) -> tuple[Replay, int]:
    replay, last = Replay(capacity), first - 1
    for n in sizes:
        replay.append(Part(last + 1, EventColumns.of_rows(rows(last + 1, n))))
        last += n
    return replay, last


@settings(max_examples=300)
@given(st.lists(st.integers(1, 40), max_size=12), st.integers(0, 60), st.integers(-5, 400),
       st.sampled_from([None, frozenset("A"), frozenset("BC")]))
def test_replay_serves_exactly_the_newest_capacity_events_after_an_id(sizes, capacity, back, symbols):
    replay, last = fill(sizes, capacity)
    kept = list(range(max(1000, last - capacity + 1), last + 1))
    assert replay.first(last) == (kept[0] if kept else last + 1)
    after = last - back
    parts = replay.after(after, symbols, last)
    ids = [i for p in parts for i in p.ids()]
    frames = [f for p in parts for f in p.frames()]
    want = [i for i in kept if i > after and (symbols is None or "ABC"[i % 3] in symbols)]
    assert ids == want
    assert b"".join(p.data() for p in parts) == b"".join(frames)
    for i, f in zip(ids, frames, strict=True):
        head, data = f.split(b"\ndata: ")
        assert head == b"id: %d" % i and orjson.loads(data)["price"] == float(i)
    # whole parts only: nothing older than the oldest part still needed is held
    assert sum(p.n for p in replay.parts) < capacity + max(sizes, default=0) + 1


def test_cleared_replay_serves_nothing():
    replay, last = fill([5, 5], 100)
    replay.clear()
    assert replay.first(last) == last + 1 and replay.after(last - 3, None, last) == []
