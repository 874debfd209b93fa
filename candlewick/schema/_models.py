"""The data Candlewick moves around: ticks, candles, symbols and the wire shapes of replies."""

from __future__ import annotations

from typing import NamedTuple

import attrs


class Tick(NamedTuple):
    """One validated trade. A tuple, not an attrs class: millions pass through per second."""

    key: bytes | str
    """Idempotency key, as the decoder gives it: the 16-byte digest (``schema.digest_key``) of the
    client's key, or of ``source:symbol:ts:price:volume``. Code and tests that build ticks directly
    may use any string; the book and the stores compare keys only for equality."""
    symbol: str
    price: float
    ts: float
    """Trade time, epoch seconds."""
    volume: float


class Bar:
    """Aggregate of the trades of one bucket: OHLC by trade time plus the metric sums.

    Mutable state owned by one symbol's book (or a store); not a message.
    Ties in trade time: open keeps the first applied tick, close takes the last applied.
    """

    __slots__ = ("bucket", "open", "open_ts", "high", "low", "close", "close_ts",
                 "count", "volume", "pv", "psum")

    def __init__(self, bucket: int, price: float, ts: float, volume: float) -> None:
        self.bucket = bucket
        self.open = self.high = self.low = self.close = price
        self.open_ts = self.close_ts = ts
        self.count = 1
        self.volume = volume
        self.pv = price * volume
        self.psum = price

    def add(self, price: float, ts: float, volume: float) -> None:
        """Merge one trade in (any order of arrival)."""
        if ts < self.open_ts:
            self.open, self.open_ts = price, ts
        if ts >= self.close_ts:
            self.close, self.close_ts = price, ts
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        self.count += 1
        self.volume += volume
        self.pv += price * volume
        self.psum += price

    def merge(self, other: Bar) -> None:
        """Merge a later-applied bar of the same bucket (or a finer bar, for rollups)."""
        if other.open_ts < self.open_ts:
            self.open, self.open_ts = other.open, other.open_ts
        if other.close_ts >= self.close_ts:
            self.close, self.close_ts = other.close, other.close_ts
        self.high = max(self.high, other.high)
        self.low = min(self.low, other.low)
        self.count += other.count
        self.volume += other.volume
        self.pv += other.pv
        self.psum += other.psum

    def copy(self, bucket: int | None = None) -> Bar:
        bar = Bar.__new__(Bar)
        for name in Bar.__slots__:
            setattr(bar, name, getattr(self, name))
        if bucket is not None:
            bar.bucket = bucket
        return bar

    @property
    def vwap(self) -> float | None:
        return self.pv / self.volume if self.volume > 0 else None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bar):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in Bar.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in Bar.__slots__)
        return f"Bar({fields})"


@attrs.frozen
class SymbolInfo:
    """A row of the symbols table."""

    symbol: str
    base: str = ""
    quote: str = ""
    active: bool = True


@attrs.frozen
class Receipt:
    """What happened to one request's ticks, as the 202 body reports it."""

    accepted: int
    """Ticks applied for the first time."""
    duplicates: int
    """Ticks whose idempotency key was already applied (including repeats inside the request)."""
    skipped: int
    """Ticks older than the symbol's lateness horizon: too late to dedupe exactly, not applied."""

    def to_json(self) -> dict[str, int]:
        return {"accepted": self.accepted, "duplicates": self.duplicates,
                "queued": self.accepted, "rejected": 0, "skipped": self.skipped}
