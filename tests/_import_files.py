"""Trade files for the `candlewick import` tests, and the database's contents read back for comparison."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

SYMBOLS = ["BTCUSDT", "ETH-USD", "A.B", "xrp:x", "Z/1"]


def make_trades(n: int, *, start: float, span: float, seed: int = 1, keyed: float = 0.5, repeats: int = 0) -> pa.Table:
    """``n`` trades with times in [start, start + span) (to the millisecond, not sorted), a share
    ``keyed`` of them with a key of their own, and ``repeats`` exact copies of earlier rows appended
    (a file holding the same trade twice). One row in 20 has the trade time of the row before it (a
    tie), except rows 100, 200, ...: a tie never straddles chunks of a multiple of 100 rows, which
    may commit in any order."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        tie = rows and i % 100 and rng.random() < 0.05
        ts = rows[-1][1] if tie else round(start + rng.random() * span, 3)
        rows.append((rng.choice(SYMBOLS), ts, round(10 + rng.random() * 90, 2), round(rng.random() * 3, 4),
                     f"t-{seed}-{i}" if rng.random() < keyed else None))
    rows += [rows[rng.randrange(len(rows))] for _ in range(repeats)]
    symbol, ts, price, volume, key = zip(*rows)
    return pa.table({"symbol": pa.array(symbol), "ts": pa.array(ts, pa.float64()), "price": pa.array(price),
                     "volume": pa.array(volume), "key": pa.array(key, pa.string())})


def write_csv(table: pa.Table, path: Path) -> Path:
    pcsv.write_csv(table, path)
    return path


def write_parquet(table: pa.Table, path: Path, *, timestamps: bool = True) -> Path:
    """As Parquet; with ``timestamps`` the trade times are a UTC timestamp column (microseconds), as
    a data frame would store them, else epoch seconds."""
    if timestamps:
        micros = pa.array([round(t * 1_000_000) for t in table.column("ts").to_pylist()], pa.int64())
        table = table.set_column(1, "ts", micros.cast(pa.timestamp("us", tz="UTC")))
    pq.write_table(table, path, row_group_size=max(1, table.num_rows // 3))
    return path


def webhook_items(table: pa.Table) -> list[dict]:
    """The rows as webhook items, in file order (a row without a key posts none)."""
    out = []
    for row in table.to_pylist():
        item = {"symbol": row["symbol"], "ts": row["ts"], "price": row["price"], "volume": row["volume"]}
        if row["key"] is not None:
            item["idempotencyKey"] = row["key"]
        out.append(item)
    return out


def query(url: str, sql: str, *args) -> list[tuple]:
    """Rows of ``sql`` on a fresh connection (plain asyncio, on a thread of its own)."""
    import asyncpg

    async def run() -> list[tuple]:
        con = await asyncpg.connect(url, timeout=10)
        try:
            return [tuple(r) for r in await con.fetch(sql, *args)]
        finally:
            await con.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


RAW = "SELECT symbol, idempotency_key, price, ts, volume FROM ticks ORDER BY symbol, ts, idempotency_key"
CANDLES_1M = """SELECT s.symbol, 60, o.bucket_start, o.open, o.open_ts, o.high, o.low, o.close, o.close_ts, o.count,
    o.volume, o.psum, o.pv FROM ohlc_1m o JOIN symbols s ON s.id = o.symbol_id ORDER BY 1, 3"""
ROLLUPS = """SELECT s.symbol, o.interval, o.bucket_start, o.open, o.open_ts, o.high, o.low, o.close, o.close_ts,
    o.count, o.volume, o.psum, o.pv FROM ohlc_rollups o JOIN symbols s ON s.id = o.symbol_id ORDER BY 1, 2, 3"""


def candles(url: str) -> list[tuple]:
    """Every stored candle, 1m and rollups: (symbol, interval, bucket, open, open_ts, high, low, close,
    close_ts, count, volume, psum, pv)."""
    return query(url, CANDLES_1M) + query(url, ROLLUPS)


def assert_same_candles(got: list[tuple], want: list[tuple]) -> None:
    """Equal candles: OHLC, trade times and counts exactly; the sums (volume, sum of prices, of
    price * volume) to rounding, since float sums depend on how ticks were batched."""
    assert [c[:10] for c in got] == [c[:10] for c in want]
    for a, b in zip(got, want, strict=True):
        assert a[10:] == pytest.approx(b[10:], rel=1e-9, abs=1e-9), (a, b)
