"""A flush as the Postgres store sends it: numpy columns, binary COPY bytes, per-bucket merge rows.

Plain numpy, no I/O and no per-tick Python on the columnar path: ``postgres`` sends these bytes
with asyncpg. The rows written and the lock orders are described in docs/ARCHITECTURE.md, "Storage".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain

import numpy as np

from candlewick.schema import DIGEST_BYTES, Tick, TickColumns, digest_key, digests_from_bytes

BUCKET = 60
WEEK_OFFSET = 345_600
"""1w buckets start on Monday 00:00 UTC: the epoch was a Thursday, four days earlier."""
INTERVAL_OFFSETS = {60: 0, 300: 0, 900: 0, 3600: 0, 14_400: 0, 86_400: 0, 604_800: WEEK_OFFSET}
"""The candle intervals the store serves (seconds) and where their buckets start (seconds past an
interval-aligned epoch): bucket = floor((t - offset) / interval) * interval + offset."""
ROLLUPS = tuple(i for i in INTERVAL_OFFSETS if i != BUCKET)
"""The intervals stored in ``ohlc_rollups`` (1m has a table of its own)."""

_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_TRAILER = b"\xff\xff"

INT4, INT8, FLOAT8, DIGEST = ">i4", ">i8", ">f8", (">u8", (2,))
"""Binary COPY field types: Postgres's int4, int8, float8, and a bytea of the 16 digest bytes."""

RAW_COLUMNS = ["ts", "price", "volume", "seq", "symbol_id", "idempotency_key"]
BAR_COLUMNS = ["ord", "interval", "symbol_id", "bucket_start", "open", "open_ts", "high", "low", "close", "close_ts",
               "count", "volume", "psum", "pv"]


def copy_binary(fields: Sequence[tuple[object, np.ndarray]]) -> memoryview:
    """Rows for ``COPY ... (FORMAT binary)`` from equal-length columns ``(field type, values)``:
    each row is its field count, then each field's length and big-endian value."""
    n = len(fields[0][1])
    layout: list[tuple] = [("n", ">i2")]
    for i, (kind, _) in enumerate(fields):
        layout += [(f"l{i}", ">i4"), (f"v{i}", kind)]
    rows = np.empty(n, dtype=np.dtype(layout))
    rows["n"] = len(fields)
    for i, (kind, values) in enumerate(fields):
        rows[f"l{i}"] = np.dtype(kind).itemsize
        rows[f"v{i}"] = values
    return memoryview(b"".join((_HEADER, rows.tobytes(), _TRAILER)))  # a memoryview: asyncpg takes bytes for a path


def columns_of(batch: TickColumns | Mapping[str, Sequence[Tick]]) -> TickColumns:
    """A batch as columns. Per-symbol lists of ``Tick``s (each list in applied order) are taken in
    order; a key is a 16-byte digest or a text, digested (XXH3-128 of its UTF-8 bytes)."""
    if isinstance(batch, TickColumns):
        return batch
    symbols = [s for s, ticks in batch.items() if ticks]
    lists = [batch[s] for s in symbols]
    n = sum(map(len, lists))
    sym = np.repeat(np.arange(len(symbols), dtype=np.int32), [len(t) for t in lists])
    ticks = list(chain.from_iterable(lists))
    raw = b"".join([k if type(k) is bytes else digest_key(k.encode()) for k, *_ in ticks])
    if len(raw) != DIGEST_BYTES * n:
        raise ValueError("a tick's key is neither a text nor a 16-byte digest")
    price = np.fromiter((t[2] for t in ticks), dtype=np.float64, count=n)
    ts = np.fromiter((t[3] for t in ticks), dtype=np.float64, count=n)
    volume = np.fromiter((t[4] for t in ticks), dtype=np.float64, count=n)
    return TickColumns(symbols, sym, price, ts, volume, digests_from_bytes(raw))


def bucket_start(t: np.ndarray, interval: int) -> np.ndarray:
    """Bucket starts of integer times (1m buckets) for ``interval``: exact integer arithmetic."""
    offset = INTERVAL_OFFSETS[interval]
    return t - (t - offset) % interval


def _starts(*keys: np.ndarray) -> np.ndarray:
    """Where each run of equal ``keys`` tuples begins (the keys sorted so that equal tuples are adjacent)."""
    n = len(keys[0])
    change = np.zeros(n, dtype=bool)
    change[:1] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(change)


class Bars:
    """Merge rows: one per (interval, symbol, bucket) of some ticks, as columns, in lock order
    (symbol bytewise, then interval, then bucket). ``rank`` is the symbol's bytewise rank."""

    __slots__ = ("interval", "rank", "symbol_id", "bucket", "open", "open_ts", "high", "low", "close", "close_ts",
                 "count", "volume", "psum", "pv")

    def __init__(self, **columns: np.ndarray) -> None:
        for name in self.__slots__:
            setattr(self, name, columns[name])

    def __len__(self) -> int:
        return len(self.bucket)

    @classmethod
    def minutes(cls, rank: np.ndarray, symbol_id: np.ndarray, price: np.ndarray, ts: np.ndarray,
                volume: np.ndarray) -> Bars:
        """The ticks (in applied order) aggregated per (symbol, minute) with the candle rule: open is
        the price of the earliest trade (the first applied on a tie), close that of the latest (the
        last applied on a tie). A stable sort by (symbol, minute, trade time) keeps applied order in ties."""
        minute = (np.floor(ts / BUCKET) * BUCKET).astype(np.int64)  # IEEE division, then floor: bucket_of
        order = np.lexsort((ts, minute, rank))
        r, m, p, t, v = rank[order], minute[order], price[order], ts[order], volume[order]
        start = _starts(r, m)
        end = np.append(start[1:], len(order)) - 1
        return cls(interval=np.full(len(start), BUCKET, dtype=np.int32), rank=r[start],
                   symbol_id=symbol_id[order][start], bucket=m[start], open=p[start], open_ts=t[start],
                   high=np.maximum.reduceat(p, start), low=np.minimum.reduceat(p, start), close=p[end],
                   close_ts=t[end], count=end - start + 1, volume=np.add.reduceat(v, start),
                   psum=np.add.reduceat(p, start), pv=np.add.reduceat(p * v, start))

    def rollup(self, interval: int) -> Bars:
        """These minutes (in lock order) merged into buckets of ``interval``: a bucket's minutes hold
        disjoint trade times, so its open is its first minute's, its close its last minute's."""
        bucket = bucket_start(self.bucket, interval)
        start = _starts(self.rank, bucket)
        end = np.append(start[1:], len(bucket)) - 1
        return Bars(interval=np.full(len(start), interval, dtype=np.int32), rank=self.rank[start],
                    symbol_id=self.symbol_id[start], bucket=bucket[start], open=self.open[start],
                    open_ts=self.open_ts[start], high=np.maximum.reduceat(self.high, start),
                    low=np.minimum.reduceat(self.low, start), close=self.close[end], close_ts=self.close_ts[end],
                    count=np.add.reduceat(self.count, start), volume=np.add.reduceat(self.volume, start),
                    psum=np.add.reduceat(self.psum, start), pv=np.add.reduceat(self.pv, start))

    def take(self, index: np.ndarray) -> Bars:
        return Bars(**{name: getattr(self, name)[index] for name in self.__slots__})

    @classmethod
    def concat(cls, parts: Sequence[Bars]) -> Bars:
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in cls.__slots__})

    def copy_rows(self) -> memoryview:
        """These rows for ``COPY staging_bars`` (``BAR_COLUMNS``), ``ord`` being their position."""
        return copy_binary([(INT4, np.arange(len(self), dtype=np.int32)), (INT4, self.interval),
                            (INT4, self.symbol_id), (INT8, self.bucket), (FLOAT8, self.open), (FLOAT8, self.open_ts),
                            (FLOAT8, self.high), (FLOAT8, self.low), (FLOAT8, self.close), (FLOAT8, self.close_ts),
                            (INT8, self.count), (FLOAT8, self.volume), (FLOAT8, self.psum), (FLOAT8, self.pv)])


class Flush:
    """One write's ticks, ready for Postgres: the raw rows to store (trade time at or after
    ``raw_floor``), sorted by (symbol id, trade time, key), the order every writer inserts in,
    and the merge rows of any subset of the ticks."""

    def __init__(self, cols: TickColumns, ids: np.ndarray, seq: np.ndarray, raw_floor: float,
                 floor_1m: float) -> None:
        """``ids``: the database id of each of ``cols.symbols``; ``seq``: each tick's arrival number."""
        ranks = np.empty(len(cols.symbols), dtype=np.int32)
        ranks[sorted(range(len(cols.symbols)), key=cols.symbols.__getitem__)] = np.arange(len(cols.symbols))
        self.cols = cols
        self.rank = ranks[cols.sym]
        self.symbol_id = ids[cols.sym].astype(np.int32)
        self.seq = seq
        self.floor_1m = floor_1m
        keep = cols.ts >= raw_floor
        order = np.lexsort((cols.digest[:, 1], cols.digest[:, 0], cols.ts, self.symbol_id))
        self.raw = order[keep[order]]
        """Positions of the ticks stored raw, in insertion order."""
        self.aggregated_only = ~keep
        """Ticks older than raw retention: merged into the bars, not stored raw (so not deduped here)."""

    def __len__(self) -> int:
        return len(self.cols)

    def raw_rows(self) -> memoryview:
        """The raw rows for ``COPY ticks_raw`` (``RAW_COLUMNS``)."""
        c, i = self.cols, self.raw
        return copy_binary([(FLOAT8, c.ts[i]), (FLOAT8, c.price[i]), (FLOAT8, c.volume[i]), (INT8, self.seq[i]),
                            (INT4, self.symbol_id[i]), (DIGEST, c.digest[i])])

    def raw_span(self) -> tuple[float, float] | None:
        """The least and greatest trade time stored raw, if any."""
        if not len(self.raw):
            return None
        ts = self.cols.ts[self.raw]
        return float(ts.min()), float(ts.max())

    def bars(self, mask: np.ndarray | None = None) -> Bars:
        """The merge rows of the ticks (or those where ``mask``): 1m rows from ``floor_1m`` on
        (older minutes are past 1m retention), then every rollup, in lock order."""
        c = self.cols
        if mask is None:
            minutes = Bars.minutes(self.rank, self.symbol_id, c.price, c.ts, c.volume)
        else:
            minutes = Bars.minutes(self.rank[mask], self.symbol_id[mask], c.price[mask], c.ts[mask], c.volume[mask])
        rollups = Bars.concat([minutes.rollup(i) for i in ROLLUPS])
        rollups = rollups.take(np.lexsort((rollups.bucket, rollups.interval, rollups.rank)))
        return Bars.concat([minutes.take(minutes.bucket >= self.floor_1m), rollups])
