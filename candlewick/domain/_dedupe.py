"""The dedupe index of many symbols in one hash table of 128-bit key digests: exact, about 30 bytes a key.

Each remembered key is one slot of four columns: ``tag`` (the digest's high half mixed with the
symbol's row), ``lo`` (the low half), ``row`` and ``minute`` (of the trade time it was first seen
with): 24 bytes. Slots come in buckets of ``SLOTS``. A key has two buckets, one named by each half
of its tag, and goes into the one with more free slots (two choices keep the buckets even, so a
full table rarely has a full bucket). Should both be full, it goes on along the first one's
neighbours; ``spill`` marks each full bucket it passed, and only there does a lookup go on to the
next bucket. The table is kept between 60 % and 90 % full of live keys (rebuilt outside that band),
so a live key costs 24 / 0.6 = 40 bytes at most, about 30 on average.

Forgetting costs nothing: a key is live while its minute is at or above its row's floor minute
(``floors[row]``, which only rises), and a slot whose key is not live is free for the next key.
Lookups and inserts are vectorized over the whole batch; their Python loops run per round (one in
the common case; more only for keys that met a full bucket or several new keys of one bucket),
never per key.

Exactness: a lookup matches the 64-bit tag, the low half and the row, so a tick is a duplicate only
when the same 128-bit digest was seen before for the same row and is still live.
"""

from __future__ import annotations

import numpy as np

SLOTS = 16
"""Slots in a bucket (a lookup reads a bucket's 16 tags at once)."""
FILL_MAX = 0.90
FILL_MIN = 0.60
GROW_TO = 0.62
SHRINK_TO = 0.75
"""Live keys per slot: grown above ``FILL_MAX`` (rebuilt ``GROW_TO`` full, so that growing is rare),
shrunk below ``FILL_MIN`` (rebuilt ``SHRINK_TO`` full)."""
REBUILD_FIRST = 12
"""A rebuild puts up to this many keys in each key's first bucket straight away (the rest take the
general way, into the freer of their buckets)."""
SPILL_MAX = 0.05
"""Also rebuilt when more than this share of the buckets has spilled."""
MIN_BUCKETS = 64
CHUNK = 1 << 16
"""Keys inserted per vectorized step (a rebuild inserts them all, in steps of this many)."""

_MIX = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(32)
_LOW = np.uint64(0xFFFFFFFF)


def tags(rows: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A digest's high half mixed with its row: the same key of two symbols lands in other buckets."""
    return hi ^ ((rows.astype(np.uint64) + np.uint64(1)) * _MIX)


def first_seen(rows: np.ndarray, digest: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Of the items at positions ``among`` (ascending), those whose (row, digest) comes first in the
    batch: a later item with the same row and digest is a duplicate of it. A boolean per position."""
    r, hi, lo = rows[among], digest[among, 0], digest[among, 1]
    order = np.lexsort((lo, hi, r))  # stable: equal keys keep arrival order
    ro, ho, lo_ = r[order], hi[order], lo[order]
    repeat = np.zeros(len(among), dtype=bool)
    repeat[1:] = (ro[1:] == ro[:-1]) & (ho[1:] == ho[:-1]) & (lo_[1:] == lo_[:-1])
    first = np.ones(len(among), dtype=bool)
    first[order[repeat]] = False
    return first


def _ranks(keys: np.ndarray) -> np.ndarray:
    """Each item's rank among the items before it (in input order) with an equal key."""
    n = len(keys)
    order = np.argsort(keys, kind="stable")
    s = keys[order]
    head = np.ones(n, dtype=bool)
    head[1:] = s[1:] != s[:-1]
    starts = np.flatnonzero(head)
    rank = np.empty(n, dtype=np.intp)
    rank[order] = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
    return rank


class KeyIndex:
    """Remembered keys of many rows, each with the minute it was first seen in.

    ``floors``, wherever a method takes it, is each row's floor minute (an int64 array indexable by
    every row, and by -1): keys of a row below its floor minute are forgotten."""

    __slots__ = ("_tag", "_lo", "_row", "_minute", "_spill", "_buckets", "_spilled")

    def __init__(self) -> None:
        self._alloc(MIN_BUCKETS)

    def _alloc(self, buckets: int) -> None:
        self._buckets = buckets
        shape = (buckets, SLOTS)
        self._tag = np.zeros(shape, dtype=np.uint64)
        self._lo = np.zeros(shape, dtype=np.uint64)
        self._row = np.full(shape, -1, dtype=np.int32)
        """-1: an empty slot."""
        self._minute = np.zeros(shape, dtype=np.int32)
        self._spill = np.zeros(buckets, dtype=bool)
        self._spilled = 0

    @property
    def slots(self) -> int:
        return self._row.size

    @property
    def nbytes(self) -> int:
        return self._tag.nbytes + self._lo.nbytes + self._row.nbytes + self._minute.nbytes + self._spill.nbytes

    def _choices(self, tag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nb = np.uint64(self._buckets)
        return ((tag >> _SHIFT) * nb >> _SHIFT).astype(np.intp), ((tag & _LOW) * nb >> _SHIFT).astype(np.intp)

    # -- lookups ------------------------------------------------------------------------------
    def find(self, rows: np.ndarray, digest: np.ndarray, live_from: np.ndarray) -> np.ndarray:
        """For each (row, digest): whether it is remembered with a minute at or above ``live_from``
        (the row's floor minute, per item). A boolean per item."""
        m = len(rows)
        out = np.zeros(m, dtype=bool)
        if not m:
            return out
        tag = tags(rows, digest[:, 0])
        first, second = self._choices(tag)
        at = np.arange(m)
        self._probe(out, at, np.concatenate((first, second)), np.concatenate((tag, tag)),
                    np.concatenate((digest[:, 1], digest[:, 1])), np.concatenate((rows, rows)),
                    np.concatenate((live_from, live_from)), np.concatenate((at, at)))
        return out

    def _probe(self, out, at, bucket, tag, lo, rows, live_from, item) -> None:
        """Set ``out[item]`` where the key is live in ``bucket``, or further along a spill chain."""
        while True:
            hit = self._tag.take(bucket, axis=0) == tag[:, None]
            some = np.flatnonzero(hit.view(np.uint64).reshape(len(hit), SLOTS // 8).any(axis=1))
            if len(some):
                q, lane = np.nonzero(hit[some])
                q = some[q]
                b = bucket[q]
                ok = (self._lo[b, lane] == lo[q]) & (self._row[b, lane] == rows[q]) \
                    & (self._minute[b, lane] >= live_from[q])
                out[item[q[ok]]] = True
            go = self._spill[bucket] & ~out[item]
            if not go.any():
                return
            bucket = (bucket[go] + 1) % self._buckets
            tag, lo, rows, live_from, item = tag[go], lo[go], rows[go], live_from[go], item[go]

    def count_live(self, floors: np.ndarray) -> int:
        """Live keys held (a full scan: for tests and checks)."""
        return int(self._live_mask(floors).sum())

    def _live_mask(self, floors: np.ndarray) -> np.ndarray:
        row = self._row
        return (row >= 0) & (self._minute >= floors[row])

    # -- changes ------------------------------------------------------------------------------
    def add(self, rows: np.ndarray, digest: np.ndarray, minutes: np.ndarray, floors: np.ndarray, live: int) -> None:
        """Remember new keys (none of them live already) first seen at ``minutes``; ``live``: the
        live keys, these included. Rebuilds the table first when ``live`` is outside its band."""
        new = (rows.astype(np.int32), tags(rows, digest[:, 0]), digest[:, 1], minutes.astype(np.int32))
        slots = self.slots
        if live > FILL_MAX * slots:
            self.rebuild(floors, live / GROW_TO, new)
        elif (live < FILL_MIN * slots and self._buckets > MIN_BUCKETS) or self._spilled > SPILL_MAX * self._buckets:
            self.rebuild(floors, live / SHRINK_TO, new)
        else:
            self._insert(*new, floors)

    def rebuild(self, floors: np.ndarray, slots: float, new: tuple = ()) -> None:
        """Rehash the live keys (and ``new``: rows, tags, low halves, minutes) into a table of at
        least ``slots`` slots. The table is empty, so the first ``REBUILD_FIRST`` keys of each first
        bucket go there at their rank without reading a slot."""
        keep = self._live_mask(floors)
        row, tag, lo, minute = self._row[keep], self._tag[keep], self._lo[keep], self._minute[keep]
        del keep
        if new:
            row, tag, lo, minute = (np.concatenate((a, b)) for a, b in zip((row, tag, lo, minute), new, strict=True))
        self._alloc(max(MIN_BUCKETS, int(np.ceil(max(slots, len(row) / GROW_TO) / SLOTS))))
        bucket = self._choices(tag)[0]
        rank = _ranks(bucket)
        now = rank < REBUILD_FIRST
        b, lane = bucket[now], rank[now]
        self._tag[b, lane], self._lo[b, lane], self._row[b, lane], self._minute[b, lane] = \
            tag[now], lo[now], row[now], minute[now]
        now = ~now
        self._insert(row[now], tag[now], lo[now], minute[now], floors)

    def purge(self, rows: np.ndarray | list[int]) -> None:
        """Forget every key of ``rows`` (a row rebuilt from the store starts afresh)."""
        self._row[np.isin(self._row, np.asarray(rows, dtype=np.int32))] = -1

    def _insert(self, row: np.ndarray, tag: np.ndarray, lo: np.ndarray, minute: np.ndarray, floors: np.ndarray) -> None:
        """Insert in chunks (bounded temporaries), each as ``_insert_chunk``."""
        for a in range(0, len(row), CHUNK):
            self._insert_chunk(row[a:a + CHUNK], tag[a:a + CHUNK], lo[a:a + CHUNK], minute[a:a + CHUNK], floors)

    def _insert_chunk(self, row: np.ndarray, tag: np.ndarray, lo: np.ndarray, minute: np.ndarray,
                      floors: np.ndarray) -> None:
        """Each key into the freer of its two buckets (the first on a tie), at the first free slot
        after those taken by keys before it in the chunk; a key whose buckets are both full goes on
        along the first one's neighbours (spilling each), and one that finds its bucket taken by
        keys before it tries again in the next round."""
        m = len(row)
        first, second = self._choices(tag)
        while m:
            holder = self._row.take(np.concatenate((first, second)), axis=0)
            free = (holder < 0) | (self._minute.take(np.concatenate((first, second)), axis=0) < floors.take(holder))
            count = free.sum(axis=1)
            other = count[m:] > count[:m]
            bucket = np.where(other, second, first)
            room = np.where(other, count[m:], count[:m])
            rank = _ranks(bucket)
            ok = rank < room
            put = np.flatnonzero(ok)
            if len(put):
                pick = put + m * other[put]
                want = (np.cumsum(free[pick], axis=1) == (rank[put] + 1)[:, None]) & free[pick]
                b, lane = bucket[put], want.argmax(axis=1)
                self._tag[b, lane], self._lo[b, lane], self._row[b, lane], self._minute[b, lane] = \
                    tag[put], lo[put], row[put], minute[put]
            full = ~ok & (room == 0)
            if full.any():  # both buckets full: on along the first one's neighbours
                passed = np.unique(first[full])
                self._spilled += int((~self._spill[passed]).sum())
                self._spill[passed] = True
                first[full] = second[full] = (first[full] + 1) % self._buckets
            left = ~ok
            row, tag, lo, minute, first, second = row[left], tag[left], lo[left], minute[left], first[left], second[left]
            m = len(row)
