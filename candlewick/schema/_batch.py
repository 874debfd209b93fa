"""Ticks as columns: the form a request's ticks take from the decoder to the stores.

One ``TickColumns`` holds n ticks in arrival order as numpy arrays, with symbols as small integer
codes into ``symbols``. No object is made per tick.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from candlewick.schema._digest import DIGEST_BYTES, digest_bytes, key_digests
from candlewick.schema._models import Tick


class TickColumns:
    """n ticks as columns, in arrival order."""

    __slots__ = ("symbols", "sym", "price", "ts", "volume", "digest", "keys")

    def __init__(self, symbols: list[str], sym: np.ndarray, price: np.ndarray, ts: np.ndarray, volume: np.ndarray,
                 digest: np.ndarray, keys: Sequence[str] | None = None) -> None:
        self.symbols = symbols
        """The distinct symbols; ``sym`` indexes it."""
        self.sym = sym
        """int32 code of each tick's symbol."""
        self.price = price
        """float64 trade price."""
        self.ts = ts
        """float64 trade time, epoch seconds."""
        self.volume = volume
        """float64 traded volume."""
        self.digest = digest
        """(n, 2) uint64: each tick's idempotency key digest (``candlewick.schema.key_digests``)."""
        self.keys = keys
        """The key texts, where still at hand (None once only digests travel)."""

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def from_ticks(cls, ticks: Iterable[Tick]) -> TickColumns:
        ticks = list(ticks)
        codes: dict[str, int] = {}
        sym = np.fromiter((codes.setdefault(t.symbol, len(codes)) for t in ticks), dtype=np.int32, count=len(ticks))
        keys = [t.key for t in ticks]
        return cls(list(codes), sym,
                   np.fromiter((t.price for t in ticks), dtype=np.float64, count=len(ticks)),
                   np.fromiter((t.ts for t in ticks), dtype=np.float64, count=len(ticks)),
                   np.fromiter((t.volume for t in ticks), dtype=np.float64, count=len(ticks)),
                   key_digests(keys), keys)

    def take(self, index: np.ndarray) -> TickColumns:
        """The ticks at ``index`` (positions or a boolean mask), same symbol table."""
        keys = None
        if self.keys is not None:
            picked = np.flatnonzero(index) if index.dtype == np.bool_ else index
            keys = [self.keys[i] for i in picked.tolist()]
        return TickColumns(self.symbols, self.sym[index], self.price[index], self.ts[index], self.volume[index],
                           self.digest[index], keys)

    def to_ticks(self) -> list[Tick]:
        """Per-tick tuples (for code not yet on columns). A tick's key is its text from ``keys`` where
        the columns carry them, else its digest's 16 bytes (what the decoder gives, ``digest_key``)."""
        keys = self.keys
        if keys is None:
            keys = np.frombuffer(digest_bytes(self.digest), dtype=f"V{DIGEST_BYTES}").tolist()
        new = tuple.__new__
        return [new(Tick, row) for row in
                zip(keys, map(self.symbols.__getitem__, self.sym.tolist()), self.price.tolist(), self.ts.tolist(),
                    self.volume.tolist(), strict=True)]
