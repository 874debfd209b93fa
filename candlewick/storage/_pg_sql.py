"""The Postgres store's SQL (schema v3): the flush's statements and the bounded reads.

Plain text, no I/O: ``postgres`` runs it through asyncpg. Tables are in
``candlewick/schema/migrations``; docs/ARCHITECTURE.md, "Storage", explains the write paths.
"""

from __future__ import annotations

import math

STAGING = """CREATE TEMP TABLE IF NOT EXISTS staging_ticks (
    ts float8, price float8, volume float8, seq int8, symbol_id int4, idempotency_key bytea
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS staging_bars (
    ord int4, interval int4, symbol_id int4, bucket_start int8, open float8, open_ts float8, high float8,
    low float8, close float8, close_ts float8, count int8, volume float8, psum float8, pv float8
) ON COMMIT DELETE ROWS"""

_MERGE = """ON CONFLICT ({key}) DO UPDATE SET
        open = CASE WHEN excluded.open_ts < o.open_ts THEN excluded.open ELSE o.open END,
        open_ts = LEAST(o.open_ts, excluded.open_ts),
        high = GREATEST(o.high, excluded.high),
        low = LEAST(o.low, excluded.low),
        close = CASE WHEN excluded.close_ts >= o.close_ts THEN excluded.close ELSE o.close END,
        close_ts = GREATEST(o.close_ts, excluded.close_ts),
        count = o.count + excluded.count,
        volume = o.volume + excluded.volume,
        psum = o.psum + excluded.psum,
        pv = o.pv + excluded.pv"""

# Both write paths end with this statement: the merge rows of the really-new ticks (staged by COPY,
# one per (interval, symbol, bucket), in one lock order: symbol id, then interval and bucket,
# so concurrent writers never deadlock) are merged into ohlc_1m and ohlc_rollups with the candle
# rule (open by earliest open_ts, the stored one on a tie; close by latest close_ts, the new one on
# a tie), and the flush's outbox row ($1, when not null) is stored. Returns the outbox row's id.
UPSERT = """WITH m AS (
    INSERT INTO ohlc_1m AS o (symbol_id, bucket_start, open, open_ts, high, low, close, close_ts, count, volume,
                              psum, pv)
    SELECT symbol_id, bucket_start, open, open_ts, high, low, close, close_ts, count, volume, psum, pv
    FROM staging_bars WHERE interval = 60 ORDER BY ord
    """ + _MERGE.format(key="symbol_id, bucket_start") + """
), r AS (
    INSERT INTO ohlc_rollups AS o (symbol_id, interval, bucket_start, open, open_ts, high, low, close, close_ts,
                                   count, volume, psum, pv)
    SELECT symbol_id, interval, bucket_start, open, open_ts, high, low, close, close_ts, count, volume, psum, pv
    FROM staging_bars WHERE interval <> 60 ORDER BY ord
    """ + _MERGE.format(key="symbol_id, interval, bucket_start") + """
), x AS (
    INSERT INTO sse_outbox (rows) SELECT $1::bytea WHERE $1::bytea IS NOT NULL RETURNING id
)
SELECT id FROM x"""

# Exact path: the staged ticks that are not stored yet go in, in the order every writer inserts in;
# returns the arrival numbers of those really inserted (only they are merged into the candles).
INSERT_NEW = """INSERT INTO ticks_raw (ts, price, volume, seq, symbol_id, idempotency_key)
SELECT ts, price, volume, seq, symbol_id, idempotency_key FROM staging_ticks
ORDER BY symbol_id, ts, idempotency_key
ON CONFLICT (symbol_id, ts, idempotency_key) DO NOTHING
RETURNING seq"""

# Ids for symbols, registering the new ones. A row another writer is inserting at the same time is
# not visible to this statement's snapshot: the caller asks again for what is missing.
SYMBOL_IDS = """WITH new AS (
    INSERT INTO symbols (symbol) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING RETURNING symbol, id
)
SELECT symbol, id FROM new UNION ALL SELECT symbol, id FROM symbols WHERE symbol = ANY($1::text[])"""
NEXT_SEQ_BLOCK = "SELECT nextval('ticks_raw_seq')"
SEQ_BLOCK = 1 << 20
"""Arrival numbers per ``nextval`` (the sequence's increment)."""

OUTBOX_PENDING = """SELECT id, rows FROM sse_outbox WHERE created_at < now() - make_interval(secs => $1)
ORDER BY id LIMIT $2"""
OUTBOX_DELETE = "DELETE FROM sse_outbox WHERE id = ANY($1::bigint[])"

# -- reads: each one bounded (an index range scan with a LIMIT, or a bounded range) ---------------------
SYMBOL = "(SELECT id FROM symbols WHERE symbol = $1)"
BAR_FIELDS = "bucket_start, open, open_ts, high, low, close, close_ts, count, volume, pv, psum"

BARS = f"""SELECT {BAR_FIELDS} FROM ohlc_1m WHERE symbol_id = {SYMBOL} AND bucket_start < $2
ORDER BY bucket_start DESC LIMIT $3"""
BARS_SINCE = f"""SELECT {BAR_FIELDS} FROM ohlc_1m WHERE symbol_id = {SYMBOL} AND bucket_start >= $2
ORDER BY bucket_start"""
ROLLUPS = f"""SELECT {BAR_FIELDS} FROM ohlc_rollups WHERE symbol_id = {SYMBOL} AND interval = $2
AND bucket_start < $3 ORDER BY bucket_start DESC LIMIT $4"""

TICK_FIELDS = "price, ts, volume, seq"
LATEST = f"SELECT {TICK_FIELDS} FROM ticks_raw WHERE symbol_id = {SYMBOL} ORDER BY ts DESC, seq DESC LIMIT 1"
TICKS_PAGE = f"""SELECT {TICK_FIELDS} FROM ticks_raw WHERE symbol_id = {SYMBOL} AND ts <= $2 AND (ts, seq) < ($2, $3)
ORDER BY ts DESC, seq DESC LIMIT $4"""
BOOK_KEYS = f"SELECT idempotency_key, ts FROM ticks_raw WHERE symbol_id = {SYMBOL} AND ts >= $2"
NEWEST_1M = f"SELECT close_ts FROM ohlc_1m WHERE symbol_id = {SYMBOL} ORDER BY bucket_start DESC LIMIT 1"

# A window's partial minutes at either end, from raw ticks (at most a minute of them each).
WINDOW_RAW = f"""WITH t AS MATERIALIZED (
    SELECT price, ts, volume, seq FROM ticks_raw WHERE symbol_id = {SYMBOL} AND ts >= $2 AND ts < $3
)
SELECT (SELECT price FROM t ORDER BY ts, seq LIMIT 1), min(ts), max(price), min(price),
       (SELECT price FROM t ORDER BY ts DESC, seq DESC LIMIT 1), max(ts), count(*), sum(volume),
       sum(price * volume), sum(price)
FROM t"""
# Its whole minutes, from ohlc_1m (at most a day of them).
WINDOW_1M = f"""WITH b AS MATERIALIZED (
    SELECT * FROM ohlc_1m WHERE symbol_id = {SYMBOL} AND bucket_start >= $2 AND bucket_start < $3
)
SELECT (SELECT open FROM b ORDER BY bucket_start LIMIT 1), min(open_ts), max(high), min(low),
       (SELECT close FROM b ORDER BY bucket_start DESC LIMIT 1), max(close_ts), sum(count)::bigint, sum(volume),
       sum(pv), sum(psum)
FROM b"""

BUCKET_BOUND = 2 ** 62


def int_bound(before: float) -> int:
    """The least integer bucket not wanted by ``bucket < before``: bucket < ceil(before)."""
    if math.isnan(before):
        raise ValueError("before is NaN")
    return max(-BUCKET_BOUND, min(BUCKET_BOUND, math.ceil(before))) if math.isfinite(before) else \
        (BUCKET_BOUND if before > 0 else -BUCKET_BOUND)
