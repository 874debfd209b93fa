"""What one ``BookTable.apply`` produced, as columns (``Outcome``), and a seed's state as columns.

Statuses: NEW (applied), DUPLICATE (its key seen before), SKIPPED (older than the floor), CRASHED
(its row's work raised; nothing of it was applied: only ``apply_isolated`` gives it).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from candlewick.domain._kernel import BarColumns, minute_of
from candlewick.schema import digest_key, key_digests

NEW, DUPLICATE, SKIPPED, CRASHED = 0, 1, 2, 3

EVENT_COLUMNS = ("bucket", "open", "high", "low", "close", "volume", "sma")


class Outcome:
    """One apply, as columns: ``status`` per input tick; for the new ticks (``new``: their input
    positions, ascending) the minute's ``bucket``, the bar just after each tick (``open``, ``high``,
    ``low``, ``close``, ``volume``) and its ``sma`` (SMA10, NaN without 10 bars); ``crashed``: the
    rows whose work raised, with the exception. A request's duplicates and skipped ticks are where
    ``status`` says so (``np.flatnonzero(status == DUPLICATE)``)."""

    __slots__ = ("status", "new", *EVENT_COLUMNS, "crashed")

    def __init__(self, n: int) -> None:
        self.status = np.zeros(n, dtype=np.int8)
        self.new = np.zeros(0, dtype=np.intp)
        self.bucket = np.zeros(0, dtype=np.int64)
        self.open = self.high = self.low = self.close = self.volume = self.sma = np.zeros(0)
        self.crashed: dict[int, Exception] = {}

    def keep(self, mask: np.ndarray) -> Outcome:
        """The new ticks' columns where ``mask`` holds (statuses are not carried)."""
        out = Outcome(0)
        out.new = self.new[mask]
        for name in EVENT_COLUMNS:
            setattr(out, name, getattr(self, name)[mask])
        return out

    def joined(self, parts: Iterable[tuple[np.ndarray, Outcome]]) -> Outcome:
        """This outcome with the new ticks of ``parts`` (each: their input positions, and the
        outcome that has their columns), in input order."""
        parts = list(parts)
        if parts:
            new = np.concatenate([at for at, _ in parts])
            order = np.argsort(new, kind="stable")
            self.new = new[order]
            for name in EVENT_COLUMNS:
                setattr(self, name, np.concatenate([getattr(p, name) for _, p in parts])[order])
        return self


def digests_of(keys: list) -> np.ndarray:
    """Keys as (n, 2) uint64 digests: a 16-byte key is a digest already; a text is digested as the
    decoder digests a client's key; other bytes are digested as they are."""
    raw = [k if isinstance(k, bytes) and len(k) == 16 else digest_key(k) if isinstance(k, bytes) else None
           for k in keys]
    texts = [i for i, k in enumerate(raw) if k is None]
    out = np.zeros((len(keys), 2), dtype=np.uint64)
    done = [i for i, k in enumerate(raw) if k is not None]
    if done:
        out[done] = np.frombuffer(b"".join(raw[i] for i in done), dtype=">u8").astype(np.uint64).reshape(-1, 2)
    if texts:
        out[texts] = key_digests([keys[i] for i in texts])
    return out


def seed_columns(bars, keys, floor_minute: int):
    """A seed as columns: its bars' minutes (ascending; of two bars of one minute the later given
    wins) and values; the digests and minutes of the keys it remembers (at or above
    ``floor_minute``; of two alike, the older minute); and the keys in each bar's minute. Raises
    ValueError if a remembered key has no bar in its minute."""
    by_minute = {b.bucket // 60: b for b in bars}
    minutes = np.array(sorted(by_minute), dtype=np.int64)
    values = BarColumns.of(by_minute[m] for m in minutes.tolist())
    keys = list(keys)
    digests = digests_of([k for k, _ in keys])
    key_minutes = minute_of(np.array([t for _, t in keys], dtype=np.float64))
    order = np.lexsort((key_minutes, digests[:, 1], digests[:, 0]))
    d, km = digests[order], key_minutes[order]
    first = np.ones(len(d), dtype=bool)
    first[1:] = (d[1:, 0] != d[:-1, 0]) | (d[1:, 1] != d[:-1, 1])
    kept = first & (km >= floor_minute)
    d, km = d[kept], km[kept]
    at = np.searchsorted(minutes, km)
    if len(km) and (at.max() >= len(minutes) or (minutes[np.minimum(at, len(minutes) - 1)] != km).any()):
        raise ValueError("a remembered key of the seed has no bar in its minute")
    per_bar = np.bincount(at, minlength=len(minutes)).astype(np.int64)
    return minutes, values, d, km, per_bar
