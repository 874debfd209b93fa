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


def time_order(symbol_id: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Positions sorted by (symbol id, trade time), ties in applied order (a stable sort)."""
    return np.lexsort((ts, symbol_id))


def key_order(order: np.ndarray, symbol_id: np.ndarray, ts: np.ndarray, digest: np.ndarray) -> np.ndarray:
    """``order`` (a ``time_order``) with each run of equal (symbol id, trade time) sorted by key
    digest: the order every writer inserts raw rows in, (symbol id, trade time, key)."""
    s, t = symbol_id[order], ts[order]
    tie = (s[1:] == s[:-1]) & (t[1:] == t[:-1])
    if not tie.any():
        return order
    run = np.cumsum(np.concatenate(([True], ~tie)))
    tied = np.flatnonzero(np.concatenate(([False], tie)) | np.concatenate((tie, [False])))
    sub = order[tied]
    out = order.copy()
    out[tied] = sub[np.lexsort((digest[sub, 1], digest[sub, 0], run[tied]))]
    return out


class Bars:
    """Merge rows: one per (interval, symbol, bucket) of some ticks, as columns, in lock order
    (symbol id, then interval, then bucket)."""

    __slots__ = ("interval", "symbol_id", "bucket", "open", "open_ts", "high", "low", "close", "close_ts",
                 "count", "volume", "psum", "pv")

    def __init__(self, **columns: np.ndarray) -> None:
        for name in self.__slots__:
            setattr(self, name, columns[name])

    def __len__(self) -> int:
        return len(self.bucket)

    @classmethod
    def minutes(cls, symbol_id: np.ndarray, price: np.ndarray, ts: np.ndarray, volume: np.ndarray,
                order: np.ndarray) -> Bars:
        """The ticks at ``order`` (a ``time_order``, or part of one) aggregated per (symbol, minute)
        with the candle rule: open is the price of the earliest trade (the first applied on a tie),
        close that of the latest (the last applied on a tie). The minute grows with the trade time,
        so runs of (symbol, minute) are adjacent in that order."""
        s, p, t, v = symbol_id[order], price[order], ts[order], volume[order]
        m = (np.floor(t / BUCKET) * BUCKET).astype(np.int64)  # IEEE division, then floor: bucket_of
        start = _starts(s, m)
        end = np.append(start[1:], len(order)) - 1
        return cls(interval=np.full(len(start), BUCKET, dtype=np.int32),
                   symbol_id=s[start], bucket=m[start], open=p[start], open_ts=t[start],
                   high=np.maximum.reduceat(p, start), low=np.minimum.reduceat(p, start), close=p[end],
                   close_ts=t[end], count=end - start + 1, volume=np.add.reduceat(v, start),
                   psum=np.add.reduceat(p, start), pv=np.add.reduceat(p * v, start))

    def rollup(self, interval: int) -> Bars:
        """These minutes (in lock order) merged into buckets of ``interval``: a bucket's minutes hold
        disjoint trade times, so its open is its first minute's, its close its last minute's."""
        bucket = bucket_start(self.bucket, interval)
        start = _starts(self.symbol_id, bucket)
        end = np.append(start[1:], len(bucket)) - 1
        return Bars(interval=np.full(len(start), interval, dtype=np.int32), symbol_id=self.symbol_id[start],
                    bucket=bucket[start], open=self.open[start], open_ts=self.open_ts[start], high=np.maximum.reduceat(self.high, start),
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
    and the merge rows of any subset of the ticks. Symbol ids give every writer the same lock
    order without comparing texts."""

    def __init__(self, cols: TickColumns, ids: np.ndarray, seq: np.ndarray, raw_floor: float,
                 floor_1m: float) -> None:
        """``ids``: the database id of each of ``cols.symbols``; ``seq``: each tick's arrival number."""
        self.cols = cols
        self.symbol_id = ids[cols.sym].astype(np.int32)
        self.seq = seq
        self.floor_1m = floor_1m
        self.order = time_order(self.symbol_id, cols.ts)
        keep = cols.ts >= raw_floor
        raw = key_order(self.order, self.symbol_id, cols.ts, cols.digest)
        self.raw = raw[keep[raw]]
        """Positions of the ticks stored raw, in insertion order."""
        self.aggregated_only = ~keep
        """Ticks older than raw retention: merged into the bars, not stored raw (so not deduped here)."""
        self._raw_rows: memoryview | None = None

    def __len__(self) -> int:
        return len(self.cols)

    def raw_rows(self) -> memoryview:
        """The raw rows for ``COPY ticks_raw`` (``RAW_COLUMNS``), made once (a retried write, or
        one prepared ahead in a worker thread, reuses them)."""
        if self._raw_rows is None:
            c, i = self.cols, self.raw
            self._raw_rows = copy_binary([(FLOAT8, c.ts[i]), (FLOAT8, c.price[i]), (FLOAT8, c.volume[i]),
                                          (INT8, self.seq[i]), (INT4, self.symbol_id[i]), (DIGEST, c.digest[i])])
        return self._raw_rows

    def bars(self, mask: np.ndarray | None = None) -> Bars:
        """The merge rows of the ticks (or those where ``mask``): 1m rows from ``floor_1m`` on
        (older minutes are past 1m retention), then every rollup, in lock order."""
        c, order = self.cols, self.order
        minutes = Bars.minutes(self.symbol_id, c.price, c.ts, c.volume, order if mask is None else order[mask[order]])
        rollups = Bars.concat([minutes.rollup(i) for i in ROLLUPS])
        rollups = rollups.take(np.lexsort((rollups.bucket, rollups.interval, rollups.symbol_id)))
        return Bars.concat([minutes.take(minutes.bucket >= self.floor_1m), rollups])
