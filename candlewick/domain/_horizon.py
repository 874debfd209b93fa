"""The book's dedupe horizon, sans-IO: the keys it remembers, minute by minute, and when it forgets them.

See docs/ARCHITECTURE.md, "The book table" (dedupe horizon).
"""

from __future__ import annotations

from bisect import insort

from candlewick.domain._candles import BUCKET

INF = float("inf")


class KeyHorizon:
    """The keys a ``SymbolBook`` remembers and its floor: the book's base class, so that its hot
    paths reach this state as plain attributes of the book."""

    __slots__ = ("lateness", "max_keys", "max_ts", "keys", "_cap_floor", "_floor", "_evict_at", "_key_buckets",
                 "_key_order", "_kb_bucket", "_kb_list")

    def __init__(self, lateness: float, max_keys: int, max_ts: float | None) -> None:
        self.lateness = lateness
        self.max_keys = max_keys
        self.max_ts = max_ts if max_ts is not None else -INF
        self._cap_floor = -INF
        self._floor = -INF
        """``floor``, kept current after every batch."""
        self._evict_at = -INF
        """The floor at which ``_evict`` next has something to forget."""
        self.keys: set[str] = set()
        self._key_buckets: dict[int, list[str]] = {}
        self._key_order: list[int] = []
        self._kb_bucket: int | None = None
        self._kb_list: list[str] | None = None
        """The newest minute's key list and its bucket, kept at hand."""

    @property
    def floor(self) -> float:
        """Ticks with trade time below this are skipped: their keys may be forgotten."""
        return max(self.max_ts - self.lateness, self._cap_floor)

    def _remember(self, key: str, bucket: int) -> None:
        self.keys.add(key)
        kb = self._key_buckets.get(bucket)
        korder = self._key_order
        if kb is None:
            kb = self._key_buckets[bucket] = []
            if not korder or bucket > korder[-1]:
                korder.append(bucket)
            else:
                insort(korder, bucket)
            if bucket + BUCKET < self._evict_at:
                self._evict_at = bucket + BUCKET
        if bucket == korder[-1]:
            self._kb_bucket, self._kb_list = bucket, kb
        kb.append(key)

    def _forget_keys(self) -> float:
        """Forget the keys that the floor has passed; enforce ``max_keys`` (which raises the floor).
        Returns the floor."""
        korder, kbuckets, keys = self._key_order, self._key_buckets, self.keys
        floor = self._floor = self.floor
        drop = 0
        while drop < len(korder) and korder[drop] + BUCKET <= floor:
            keys.difference_update(kbuckets.pop(korder[drop]))
            drop += 1
        while len(keys) > self.max_keys and drop < len(korder) - 1:
            bucket = korder[drop]
            keys.difference_update(kbuckets.pop(bucket))
            self._cap_floor = max(self._cap_floor, bucket + BUCKET)
            drop += 1
        if drop:
            del korder[:drop]
            if self._kb_bucket not in kbuckets:
                self._kb_bucket = self._kb_list = None
        floor = self._floor = self.floor
        return floor
