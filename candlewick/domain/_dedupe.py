"""The dedupe index of many symbols in one hash table of 128-bit key digests: exact, about 30 bytes a key.

Each remembered key is one slot of four columns: ``tag`` (the digest's high half mixed with the
symbol's row), ``lo`` (the low half), ``row`` and ``minute`` (of the trade time it was first seen
with): 24 bytes. Slots come in buckets of ``SLOTS``. A key has two buckets, one named by each half
of its tag, and goes into the one with more free slots (two choices keep the buckets even, so a
full table rarely has a full bucket). Should both be full, it goes on along the first one's
neighbours; ``spill`` marks each full bucket it passed, and only there does a lookup go on to the
next bucket. The table is kept between 60 % and 90 % full of live keys, so a live key costs
24 / 0.6 = 40 bytes at most, about 30 on average: it is grown as soon as it is fuller, and shrunk
when even the most live keys it held while as many keys as it has slots went in were fewer, to
fit that many (so a live count that swings with the minutes, as with a short lateness, does not
rebuild it over and over; at the low of such a swing a key costs more).

Forgetting costs nothing: a key is live while its minute is at or above its row's floor minute
(``floors[row]``, which only rises), and a slot whose key is not live is free for the next key.
Lookups and inserts are vectorized over the batch, in steps of ``CHUNK`` keys; their Python loops
run per step and round (one round in the common case; more only for keys that met a full bucket or
several new keys of one bucket), never per key.

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
CHUNK = 2048
"""Keys looked up or inserted per vectorized step. A step's temporaries take about 256 bytes a key
(the 32 slots of its two buckets), so they stay well below the 1 MiB from which glibc maps each
allocation afresh (``runtime.tune_malloc``): they come from the heap, already paged in, instead of
costing a page fault every 4 KiB."""

_MIX = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xC2B2AE3D27D4EB4F)
_SHIFT = np.uint64(32)
_LOW = np.uint64(0xFFFFFFFF)


def tags(rows: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A digest's high half mixed with its row: the same key of two symbols lands in other buckets."""
    return hi ^ ((rows.astype(np.uint64) + np.uint64(1)) * _MIX)


def first_seen(rows: np.ndarray, digest: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Of the items at positions ``among`` (ascending), those whose (row, digest) comes first in the
    batch: a later item with the same row and digest is a duplicate of it. A boolean per position.
    A 64-bit summary of each (row, digest), sorted, shows at once a batch with no repeat (the common
    case); else equal items are found exactly."""
    r, hi, lo = rows[among], digest[among, 0], digest[among, 1]
    first = np.ones(len(among), dtype=bool)
    summary = np.sort(tags(r, hi) ^ (lo * _MIX2))
    if not (summary[1:] == summary[:-1]).any():
        return first
    order = np.lexsort((lo, hi, r))  # stable: equal keys keep arrival order
    ro, ho, lo_ = r[order], hi[order], lo[order]
    repeat = np.zeros(len(among), dtype=bool)
    repeat[1:] = (ro[1:] == ro[:-1]) & (ho[1:] == ho[:-1]) & (lo_[1:] == lo_[:-1])
    first[order[repeat]] = False
    return first


def _ranks(keys: np.ndarray) -> np.ndarray:
    """Each item's rank among the items before it (in input order) with an equal key (keys below
    2**32)."""
    n = len(keys)
    order = _stable_order(keys)
    s = keys[order]
    head = np.ones(n, dtype=bool)
    head[1:] = s[1:] != s[:-1]
    starts = np.flatnonzero(head)
    rank = np.empty(n, dtype=np.intp)
    rank[order] = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
    return rank


def _stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for keys below 2**32, in two passes of 16 bits (low half,
    then high half): numpy sorts 16-bit integers by radix, several times faster than wider ones."""
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    return order[np.argsort((keys[order] >> 16).astype(np.uint16), kind="stable")]


class KeyIndex:
    """Remembered keys of many rows, each with the minute it was first seen in.

    ``floors``, wherever a method takes it, is each row's floor minute (an int64 array indexable by
    every row, and by -1): keys of a row below its floor minute are forgotten."""

    __slots__ = ("_tag", "_lo", "_row", "_minute", "_spill", "_buckets", "_spilled", "_since", "_peak")

    def __init__(self) -> None:
        self._alloc(MIN_BUCKETS)

    def _alloc(self, buckets: int) -> None:
        self._buckets = buckets
        self._tag = np.zeros((buckets, SLOTS), dtype=np.uint64)
        self._lo = np.zeros((buckets, SLOTS), dtype=np.uint64)
        self._row = np.full((buckets, SLOTS), -1, dtype=np.int32)
        """Each slot's row (-1: empty)."""
        self._minute = np.zeros((buckets, SLOTS), dtype=np.int32)
        self._spill = np.zeros(buckets, dtype=bool)
        self._spilled = 0
        self._since = self._peak = 0
        """Keys inserted in this window, and the most live keys meanwhile. A window ends once as many
        keys as the table has slots went in: the table shrinks then if even the peak was below
        ``FILL_MIN``, to fit that peak, so a live count swinging with the minutes does not rebuild
        it again and again."""

    @property
    def slots(self) -> int:
        return self._tag.size

    @property
    def nbytes(self) -> int:
        return self._tag.nbytes + self._lo.nbytes + self._row.nbytes + self._minute.nbytes + self._spill.nbytes

    def _choices(self, tag: np.ndarray) -> np.ndarray:
        """Each tag's two buckets, as an (m, 2) array."""
        nb = np.uint64(self._buckets)
        both = np.empty((len(tag), 2), dtype=np.uint64)
        np.right_shift(tag, _SHIFT, out=both[:, 0])
        np.bitwise_and(tag, _LOW, out=both[:, 1])
        both *= nb
        both >>= _SHIFT
        return both.astype(np.intp)

    # -- lookups ------------------------------------------------------------------------------
    def find(self, rows: np.ndarray, digest: np.ndarray, live_from: np.ndarray) -> np.ndarray:
        """For each (row, digest): whether it is remembered with a minute at or above ``live_from``
        (the row's floor minute, per item). A boolean per item."""
        out = np.zeros(len(rows), dtype=bool)
        for a in range(0, len(rows), CHUNK):
            out[a:a + CHUNK] = self._find_chunk(rows[a:a + CHUNK], digest[a:a + CHUNK], live_from[a:a + CHUNK])
        return out

    def _find_chunk(self, rows: np.ndarray, digest: np.ndarray, live_from: np.ndarray) -> np.ndarray:
        out = np.zeros(len(rows), dtype=bool)
        tag, lo = tags(rows, digest[:, 0]), digest[:, 1]
        both = self._choices(tag)
        hits = np.flatnonzero(self._tag.take(both, axis=0) == tag[:, None, None])  # flat: several times faster
        q, side, lane = np.unravel_index(hits, (len(tag), 2, SLOTS))
        self._confirm(out, q, both[q, side], lane, lo, rows, live_from)
        at = np.flatnonzero(self._spill[both[:, 0]] & ~out)
        if len(at):  # rare: the key may be further along its first bucket's spilled neighbours
            self._chain(out, at, (both[at, 0] + 1) % self._buckets, tag, lo, rows, live_from)
        return out

    def _confirm(self, out, q, bucket, lane, lo, rows, live_from) -> None:
        """Set ``out[q]`` where the slot (``bucket``, ``lane``) holds the query's live key."""
        out[q[(self._lo[bucket, lane] == lo[q]) & (self._row[bucket, lane] == rows[q])
              & (self._minute[bucket, lane] >= live_from[q])]] = True

    def _chain(self, out, at, bucket, tag, lo, rows, live_from) -> None:
        """Probe the queries ``at`` from ``bucket`` on, bucket by bucket, while the one before spilled."""
        while len(at):
            hit = self._tag.take(bucket, axis=0) == tag[at, None]
            q, lane = np.nonzero(hit)
            self._confirm(out, at[q], bucket[q], lane, lo, rows, live_from)
            go = self._spill[bucket] & ~out[at]
            at, bucket = at[go], (bucket[go] + 1) % self._buckets

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
        self._since += len(rows)
        self._peak = max(self._peak, live)
        if live > FILL_MAX * slots:
            self.rebuild(floors, live / GROW_TO, new)
        elif self._spilled > SPILL_MAX * self._buckets or \
                (self._since >= slots and self._peak < FILL_MIN * slots and self._buckets > MIN_BUCKETS):
            self.rebuild(floors, self._peak / SHRINK_TO, new)
        else:
            if self._since >= slots:  # a new window for the peak
                self._since, self._peak = 0, live
            self._insert(*new, floors)

    def rebuild(self, floors: np.ndarray, slots: float, new: tuple = ()) -> None:
        """Rehash the live keys (and ``new``: rows, tags, low halves, minutes) into a table of at
        least ``slots`` slots, built aside and then taken over (a failure leaves this one as it
        was). The new table is empty, so the first ``REBUILD_FIRST`` keys of each first bucket go
        there at their rank without reading a slot."""
        keep = self._live_mask(floors)
        row, minute = self._row[keep], self._minute[keep]
        tag, lo = self._tag[keep], self._lo[keep]
        del keep
        if new:
            row, tag, lo, minute = (np.concatenate((a, b)) for a, b in zip((row, tag, lo, minute), new, strict=True))
        aside = KeyIndex.__new__(KeyIndex)
        aside._alloc(max(MIN_BUCKETS, int(np.ceil(max(slots, len(row) / GROW_TO) / SLOTS))))
        bucket = ((tag >> _SHIFT) * np.uint64(aside._buckets) >> _SHIFT).astype(np.intp)  # first choices
        rank = _ranks(bucket)
        now = rank < REBUILD_FIRST
        aside._place(bucket[now], rank[now], row[now], tag[now], lo[now], minute[now])
        now = ~now
        aside._insert(row[now], tag[now], lo[now], minute[now], floors)
        for name in KeyIndex.__slots__:
            setattr(self, name, getattr(aside, name))
        self._peak = len(row)

    def purge(self, rows: np.ndarray | list[int]) -> None:
        """Forget every key of ``rows`` (a row rebuilt from the store starts afresh)."""
        self._row[np.isin(self._row, np.asarray(rows, dtype=np.int32))] = -1

    def _place(self, bucket, lane, row, tag, lo, minute) -> None:
        at = bucket * SLOTS + lane
        self._tag.reshape(-1)[at], self._lo.reshape(-1)[at] = tag, lo
        self._row.reshape(-1)[at], self._minute.reshape(-1)[at] = row, minute

    def _insert(self, row: np.ndarray, tag: np.ndarray, lo: np.ndarray, minute: np.ndarray, floors: np.ndarray) -> None:
        """Insert in chunks (bounded temporaries), each as ``_insert_chunk``."""
        for a in range(0, len(row), CHUNK):
            self._insert_chunk(row[a:a + CHUNK], tag[a:a + CHUNK], lo[a:a + CHUNK], minute[a:a + CHUNK], floors)

    def _insert_chunk(self, row: np.ndarray, tag: np.ndarray, lo: np.ndarray, minute: np.ndarray,
                      floors: np.ndarray) -> None:
        """Each key into the freer of its two buckets (the first on a tie), at its first free slot;
        one key per bucket a round (another of the same bucket goes in the next round, seeing the
        slot the first took). A key whose buckets are both full goes on along the first one's
        neighbours (spilling each)."""
        both = self._choices(tag)
        scratch = np.empty(self._buckets, dtype=np.intp)
        while len(row):
            m = len(row)
            holder = self._row.take(both, axis=0)
            free = (holder < 0) | (self._minute.take(both, axis=0) < floors.take(holder))
            bits = np.packbits(free.reshape(-1), bitorder="little").view("<u2").reshape(m, 2)
            """Each of the two buckets' free slots as the bits of a 16-bit mask (slot i: bit i)."""
            count = np.bitwise_count(bits)
            side = (count[:, 1] > count[:, 0]).astype(np.intp)
            k = np.arange(m)
            bucket, room = both[k, side], count[k, side]
            scratch[bucket] = k
            ok = (scratch[bucket] == k) & (room > 0)
            """One key of each bucket (the last given), where the bucket has room."""
            put = np.flatnonzero(ok)
            self._place(bucket[put], _lowest_bit(bits[put, side[put]]), row[put], tag[put], lo[put], minute[put])
            full = room == 0
            if full.any():  # both buckets full: on along the first one's neighbours
                passed = np.unique(both[full, 0])
                self._spilled += int((~self._spill[passed]).sum())
                self._spill[passed] = True
                both[full] = ((both[full, 0] + 1) % self._buckets)[:, None]
            left = ~ok
            row, tag, lo, minute, both = row[left], tag[left], lo[left], minute[left], both[left]


def _lowest_bit(bits: np.ndarray) -> np.ndarray:
    """The index of each (non-zero) mask's lowest set bit: the bits below it, counted."""
    return np.bitwise_count((bits & (~bits + np.uint16(1))) - np.uint16(1)).astype(np.intp)
