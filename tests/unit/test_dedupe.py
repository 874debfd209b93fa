"""The dedupe index: exact (a key is found only for its own row, while live), bounded in bytes per key."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from candlewick.domain import KeyIndex, first_seen
from candlewick.domain._dedupe import FILL_MIN, SLOTS, _stable_order

ROWS = 4

ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.lists(st.tuples(st.integers(0, ROWS - 1), st.integers(0, 40), st.integers(0, 9)),
                                       max_size=60), st.just(0)),
    st.tuples(st.just("rise"), st.integers(0, ROWS - 1), st.integers(0, 3)),
    st.tuples(st.just("purge"), st.integers(0, ROWS - 1), st.just(0)),
), max_size=25)


def digest_of(k: int, crowd: bool) -> tuple[int, int]:
    """Key ``k``'s digest; ``crowd``: every key's high half alike (both buckets of a row's keys the
    same: full buckets, spill chains), the keys told apart by their low halves alone."""
    hi = 0xABCD1234ABCD1234 if crowd else (k * 0x9E3779B97F4A7C15 + 7) % 2**64
    return hi, (k * 0xC2B2AE3D27D4EB4F + 1) % 2**64


@settings(max_examples=150, deadline=None)
@given(ops, st.booleans())
def test_index_agrees_with_a_dict(steps, crowd):
    """Keys added, floors raised, rows purged: every lookup answers as a plain dict of live keys does,
    whether keys spread over buckets or crowd one bucket (spills, chains, free slots reused)."""
    index = KeyIndex()
    floors = np.zeros(ROWS, dtype=np.int64)
    model: dict[tuple[int, int], int] = {}

    def live(r, k):
        return (r, k) in model and model[(r, k)] >= floors[r]

    for op, a, b in steps:
        if op == "add":
            items, seen = [], set()
            for r, k, m in a:
                if (r, k) in seen or live(r, k) or m < floors[r]:
                    continue
                seen.add((r, k))
                items.append((r, k, m))
                model[(r, k)] = m
            if items:
                rows = np.array([r for r, _, _ in items])
                digest = np.array([digest_of(k, crowd) for _, k, _ in items], dtype=np.uint64)
                count = sum(live(r, k) for r, k in model)
                index.add(rows, digest, np.array([m for _, _, m in items]), floors, count)
        elif op == "rise":
            floors[a] += b
        else:
            index.purge([a])
            for key in [key for key in model if key[0] == a]:
                del model[key]
        queries = [(r, k) for r in range(ROWS) for k in range(41)]
        rows = np.array([r for r, _ in queries])
        digest = np.array([digest_of(k, crowd) for _, k in queries], dtype=np.uint64)
        got = index.find(rows, digest, floors[rows])
        assert got.tolist() == [live(r, k) for r, k in queries]
        assert index.count_live(floors) == sum(live(r, k) for r, k in model)


def test_same_digest_other_row_is_not_a_duplicate():
    """A digest remembered for one symbol's row is not seen for another's."""
    index = KeyIndex()
    floors = np.zeros(3, dtype=np.int64)
    digest = np.array([[5, 6]], dtype=np.uint64)
    index.add(np.array([0]), digest, np.array([100]), floors, 1)
    assert index.find(np.array([0, 1]), np.repeat(digest, 2, axis=0), np.zeros(2, dtype=np.int64)).tolist() == [True, False]
    digest2 = np.array([[5, 7]], dtype=np.uint64)  # same high half, other low half
    assert index.find(np.array([0]), digest2, np.zeros(1, dtype=np.int64)).tolist() == [False]


def test_a_crowded_bucket_spills_and_frees():
    """60 keys of one row with one high half: they fill its bucket and go on along spilled
    neighbours, all found; once forgotten, their slots take new keys and nothing old is found."""
    index = KeyIndex()
    floors = np.zeros(1, dtype=np.int64)
    digest = np.array([digest_of(k, True) for k in range(60)], dtype=np.uint64)
    index.add(np.zeros(60, dtype=np.int64), digest, np.zeros(60, dtype=np.int64), floors, 60)
    assert index.find(np.zeros(60, dtype=np.int64), digest, floors[[0] * 60]).all()
    assert index._spill.sum() >= 2  # 32 in its two buckets, 28 along the first one's neighbours
    floors[0] = 1
    assert not index.find(np.zeros(60, dtype=np.int64), digest, floors[[0] * 60]).any()
    later = np.array([digest_of(k, True) for k in range(100, 150)], dtype=np.uint64)
    index.add(np.zeros(50, dtype=np.int64), later, np.ones(50, dtype=np.int64), floors, 50)
    assert index.find(np.zeros(50, dtype=np.int64), later, floors[[0] * 50]).all()
    assert index.count_live(floors) == 50
    assert (index._row >= 0).sum() == 60  # the forgotten keys' slots were taken again


def test_first_seen_keeps_the_first_of_each_row_and_digest():
    rows = np.array([0, 1, 0, 0, 1, 2])
    digest = np.array([[1, 1], [1, 1], [1, 1], [1, 2], [1, 1], [1, 1]], dtype=np.uint64)
    assert first_seen(rows, digest, np.arange(6)).tolist() == [True, True, False, True, False, True]
    assert first_seen(rows, digest, np.array([2, 4, 5])).tolist() == [True, True, True]


def test_a_million_keys_take_at_most_40_bytes_each():
    """1M keys of 1,000 rows, added 10,000 at a time: the index's arrays, and everything tracemalloc
    sees left allocated, come to at most 40 bytes a key."""
    rng = np.random.default_rng(7)
    n, step, rows_n = 1_000_000, 10_000, 1000
    floors = np.zeros(rows_n, dtype=np.int64)
    gc.collect()
    tracemalloc.start()
    try:
        index = KeyIndex()
        for a in range(0, n, step):
            rows = rng.integers(0, rows_n, step)
            digest = rng.integers(0, 2**64, (step, 2), dtype=np.uint64)
            index.add(rows, digest, np.full(step, a // step, dtype=np.int64), floors, a + step)
            del rows, digest
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert index.count_live(floors) == n
    assert index.nbytes / n <= 40
    assert held / n <= 40


def test_the_table_shrinks_once_keys_are_forgotten():
    """Half the keys forgotten (floors rise): the table shrinks back into its band by the end of the
    window of inserts after the one that saw the peak (at most twice as many keys as it has slots),
    and keeps every live key."""
    rng = np.random.default_rng(8)
    floors = np.zeros(100, dtype=np.int64)
    index = KeyIndex()
    live = 0
    for minute in range(20):
        index.add(rng.integers(0, 100, 10_000), rng.integers(0, 2**64, (10_000, 2), dtype=np.uint64),
                  np.full(10_000, minute), floors, live + 10_000)
        live += 10_000
    big = index.slots
    floors[:] = 10  # minutes 0..9 forgotten
    live //= 2
    minute, inserted = 20, 0
    while index.slots == big:
        assert inserted <= 2 * big
        digest = rng.integers(0, 2**64, (1000, 2), dtype=np.uint64)
        index.add(rng.integers(0, 100, 1000), digest, np.full(1000, minute), floors, live + 1000)
        live, inserted = live + 1000, inserted + 1000
        floors[:] += 1 if inserted % 10_000 == 0 else 0
        live -= 10_000 if inserted % 10_000 == 0 else 0
        minute += 1 if inserted % 10_000 == 0 else 0
    assert index.slots < big
    assert index.count_live(floors) == live
    assert live / index.slots >= FILL_MIN
    assert index.nbytes / live <= 40
    assert index.slots % SLOTS == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 40), max_size=300))
def test_the_16_bit_radix_order_is_numpys_stable_order(keys):
    """The rebuild's sort by bucket (two 16-bit radix passes) gives what a stable argsort gives."""
    keys = np.array(keys, dtype=np.intp)
    assert _stable_order(keys).tolist() == np.argsort(keys, kind="stable").tolist()
