"""The Postgres store's SQL, and the per-(symbol, minute) aggregation its fast path merges.

Plain text and plain Python, no I/O: ``postgres`` runs them through asyncpg.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from importlib import resources
from operator import mul

from candlewick.domain import bucket_of
from candlewick.schema import Tick

WEEK_OFFSET = 345_600
"""1w buckets start on Monday 00:00 UTC: the epoch was a Thursday, four days later."""
INTERVAL_OFFSETS = {60: 0, 300: 0, 900: 0, 3600: 0, 14_400: 0, 86_400: 0, 604_800: WEEK_OFFSET}
"""The candle intervals the store serves (seconds) and where their buckets start (seconds past an
interval-aligned epoch)."""
BUCKET_BOUND = 2 ** 62


def bucket_bound(before: float, interval: int) -> int:
    """The exclusive upper bound, in 1m buckets, of the bars of ``interval`` with bucket < ``before``."""
    if math.isnan(before):
        raise ValueError("before is NaN")
    if before > BUCKET_BOUND:
        return BUCKET_BOUND
    if before < -BUCKET_BOUND:
        return -BUCKET_BOUND
    offset = INTERVAL_OFFSETS[interval]
    top = math.ceil(before) - 1
    return top - (top - offset) % interval + interval


STAGING = """CREATE TEMP TABLE IF NOT EXISTS staging_ticks (
    ord int, idempotency_key text COLLATE "C", symbol text COLLATE "C", price float8, ts float8, volume float8
) ON COMMIT DELETE ROWS"""

# The aggregate upserts, shared by both write paths. ``agg`` holds one row per (symbol, minute)
# of really-new ticks. Rows are taken in one lock order (symbol bytewise, then minute) by every
# writer, so concurrent writers never deadlock.
UPSERT_AGGREGATES = """o AS (
    INSERT INTO ohlc_1m AS o (symbol, bucket_start, open, open_ts, high, low, close, close_ts, count, volume)
    SELECT symbol, bucket_start, open, open_ts, high, low, close, close_ts, count, volume FROM agg
    ORDER BY symbol COLLATE "C", bucket_start
    ON CONFLICT (symbol, bucket_start) DO UPDATE SET
        open = CASE WHEN excluded.open_ts < o.open_ts THEN excluded.open ELSE o.open END,
        open_ts = LEAST(o.open_ts, excluded.open_ts),
        high = GREATEST(o.high, excluded.high),
        low = LEAST(o.low, excluded.low),
        close = CASE WHEN excluded.close_ts >= o.close_ts THEN excluded.close ELSE o.close END,
        close_ts = GREATEST(o.close_ts, excluded.close_ts),
        count = o.count + excluded.count,
        volume = o.volume + excluded.volume
), m AS (
    INSERT INTO metrics_1m AS m (symbol, bucket_start, count, sum, min, max, last, last_ts, volume_sum, pv_sum)
    SELECT symbol, bucket_start, count, psum, low, high, close, close_ts, volume, pv FROM agg
    ORDER BY symbol COLLATE "C", bucket_start
    ON CONFLICT (symbol, bucket_start) DO UPDATE SET
        count = m.count + excluded.count,
        sum = m.sum + excluded.sum,
        min = LEAST(m.min, excluded.min),
        max = GREATEST(m.max, excluded.max),
        last = CASE WHEN excluded.last_ts >= m.last_ts THEN excluded.last ELSE m.last END,
        last_ts = GREATEST(m.last_ts, excluded.last_ts),
        volume_sum = m.volume_sum + excluded.volume_sum,
        pv_sum = m.pv_sum + excluded.pv_sum
), s AS (
    INSERT INTO symbols (symbol) SELECT DISTINCT symbol FROM agg ON CONFLICT DO NOTHING
)"""

# Fast path, second statement: the batch's ticks were COPY'd straight into ticks_raw in this
# transaction (so every one of them is new: a known key would have aborted the COPY), and the
# store aggregated them per (symbol, minute) in the same order; merge those rows.
MERGE = """WITH agg AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], $5::float8[], $6::float8[],
                         $7::float8[], $8::float8[], $9::bigint[], $10::float8[], $11::float8[], $12::float8[])
        AS a(symbol, bucket_start, open, open_ts, high, low, close, close_ts, count, volume, psum, pv)
), """ + UPSERT_AGGREGATES + """
SELECT count(*) FROM agg"""

# Exact path (a batch holding a key that is already stored: a retry after a commit whose outcome
# was lost, another process, the same key under two symbols): one statement inserts the staged
# ticks and merges only the rows really inserted (RETURNING) into both aggregate tables. Ties in
# trade time follow arrival order (seq), as in the book.
FLUSH = """WITH new AS (
    INSERT INTO ticks_raw (idempotency_key, symbol, price, ts, volume)
    SELECT idempotency_key, symbol, price, ts, volume FROM staging_ticks ORDER BY ord
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING symbol, price, ts, volume, seq
), agg AS (
    -- floor(ts / 60): IEEE division then floor, bit-for-bit what the book computes (bucket_of)
    SELECT symbol, (floor(ts / 60) * 60)::bigint AS bucket_start,
           (array_agg(price ORDER BY ts, seq))[1] AS open, min(ts) AS open_ts,
           max(price) AS high, min(price) AS low,
           (array_agg(price ORDER BY ts DESC, seq DESC))[1] AS close, max(ts) AS close_ts,
           count(*) AS count, sum(volume) AS volume, sum(price) AS psum, sum(price * volume) AS pv
    FROM new GROUP BY 1, 2
), """ + UPSERT_AGGREGATES + """
SELECT count(*) FROM new"""

OUTBOX_INSERT = "INSERT INTO sse_outbox (rows) VALUES ($1) RETURNING id"
OUTBOX_PENDING = """SELECT id, rows FROM sse_outbox WHERE created_at < now() - make_interval(secs => $1)
ORDER BY id LIMIT $2"""
OUTBOX_DELETE = "DELETE FROM sse_outbox WHERE id = ANY($1::bigint[])"

TICK_COLUMNS = ["idempotency_key", "symbol", "price", "ts", "volume"]  # Tick's fields, in order
STAGING_COLUMNS = ["ord", *TICK_COLUMNS]

BARS = """SELECT o.bucket_start, o.open, o.open_ts, o.high, o.low, o.close, o.close_ts, o.count, o.volume,
       m.pv_sum, m.sum
FROM ohlc_1m o JOIN metrics_1m m USING (symbol, bucket_start)
WHERE o.symbol = $1 AND o.bucket_start < $2::float8
ORDER BY o.bucket_start DESC LIMIT $3"""

BARS_SINCE = """SELECT o.bucket_start, o.open, o.open_ts, o.high, o.low, o.close, o.close_ts, o.count, o.volume,
       m.pv_sum, m.sum
FROM ohlc_1m o JOIN metrics_1m m USING (symbol, bucket_start)
WHERE o.symbol = $1 AND o.bucket_start >= $2
ORDER BY o.bucket_start"""

# Bars of ``$2`` seconds aligned at offset ``$3`` (0, or Monday for weeks), newest first, rolled up
# from the 1m rows in SQL. The recursive part walks the distinct interval buckets downward, one index
# probe each (gaps cost nothing), and stops after ``$5`` of them; each bucket's minutes are then one
# range scan. ``$4`` bounds the 1m buckets (exclusive). Minutes in a bucket have disjoint trade times:
# open is the earliest minute's open, close the latest minute's close; sums in minute order.
CANDLES_1M = """WITH RECURSIVE walk(bucket) AS (
    SELECT (SELECT max(bucket_start) FROM ohlc_1m WHERE symbol = $1 AND bucket_start < $4)
    UNION ALL
    SELECT (SELECT max(bucket_start) FROM ohlc_1m WHERE symbol = $1
            AND bucket_start < walk.bucket - ((walk.bucket - $3) % $2 + $2) % $2)
    FROM walk WHERE walk.bucket IS NOT NULL
), buckets AS (
    SELECT bucket - ((bucket - $3) % $2 + $2) % $2 AS bucket FROM walk WHERE bucket IS NOT NULL LIMIT $5
)
SELECT b.bucket, a.* FROM buckets b CROSS JOIN LATERAL (
    SELECT (array_agg(o.open ORDER BY o.bucket_start))[1], min(o.open_ts), max(o.high), min(o.low),
           (array_agg(o.close ORDER BY o.bucket_start DESC))[1], max(o.close_ts), sum(o.count)::bigint,
           sum(o.volume ORDER BY o.bucket_start), sum(m.pv_sum ORDER BY o.bucket_start),
           sum(m.sum ORDER BY o.bucket_start)
    FROM ohlc_1m o JOIN metrics_1m m USING (symbol, bucket_start)
    WHERE o.symbol = $1 AND o.bucket_start >= b.bucket AND o.bucket_start < b.bucket + $2
) a
ORDER BY b.bucket DESC"""


def migrations() -> list[tuple[int, str]]:
    """The schema's migrations (``candlewick/schema/migrations/NNN_*.sql``) as (NNN, SQL), in order."""
    folder = resources.files("candlewick.schema") / "migrations"
    out = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            out.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(out)


def merge_rows(batch: Mapping[str, Sequence[Tick]]) -> list[list]:
    """The batch's ticks aggregated per (symbol, minute), as the columns of ``MERGE``'s ``agg``.

    Same rules as ``Bar.add`` and the exact path's SQL: open is the price at the earliest trade
    time (the first applied on a tie), close the price at the latest (the last applied on a tie).
    Each aggregate is one pass of a builtin over a list, so this costs far less per tick than
    the same grouping in SQL. Rows come sorted by (symbol, minute): one lock order everywhere.
    """
    cols: list[list] = [[] for _ in range(12)]
    (symbols, buckets, opens, open_tss, highs, lows, closes, close_tss, counts, volumes, psums,
     pvs) = cols
    for symbol in sorted(batch):
        ticks = batch[symbol]
        if not ticks:
            continue
        _, _, prices, tss, vols = zip(*ticks)
        open_ts, close_ts = min(tss), max(tss)
        bucket = bucket_of(open_ts)
        if bucket == bucket_of(close_ts):  # the common case: one minute
            groups = [(bucket, prices, tss, vols, open_ts, close_ts)]
        else:
            parts: dict[int, list[Tick]] = {}
            for t in ticks:
                b = bucket_of(t[3])
                part = parts.get(b)
                if part is None:
                    parts[b] = [t]
                else:
                    part.append(t)
            groups = []
            for b in sorted(parts):
                _, _, prices, tss, vols = zip(*parts[b])
                groups.append((b, prices, tss, vols, min(tss), max(tss)))
        for bucket, prices, tss, vols, open_ts, close_ts in groups:
            symbols.append(symbol)
            buckets.append(bucket)
            opens.append(prices[tss.index(open_ts)])  # the first applied at the earliest time
            open_tss.append(open_ts)
            highs.append(max(prices))
            lows.append(min(prices))
            closes.append(prices[len(tss) - 1 - tss[::-1].index(close_ts)])  # the last applied at the latest
            close_tss.append(close_ts)
            counts.append(len(tss))
            volumes.append(sum(vols))
            psums.append(sum(prices))
            pvs.append(sum(map(mul, prices, vols)))
    return cols
