"""pgscale part 2's data: N days of 1-minute candles for one symbol, by ``candlewick import`` or by SQL into the schema's candle tables.

Every minute holds the same four trades of 0.5 each: the open at +1 s, the high at +20 s, the low
at +40 s and the close at +59 s, with prices from a slow sine, so every candle, rollup and metric
is the honest aggregate of those trades. When the code has ``candlewick import`` the trades go
through it (a CSV file). Otherwise (posting them through the API is far too slow, and ticks older
than the lateness horizon are skipped) they are inserted as aggregates: the candle tables are found
in the catalogue (a bucket column and OHLC or sum columns, the interval from the table name or from
an interval column), each column filled by what its name says, and every table of a longer interval
(the stored rollups, if the schema has them) is computed in SQL from the 1-minute rows, unless the
schema filled it itself (a trigger). A NOT NULL column without a default that the seeder does not
understand makes it fail, saying which.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import tempfile
import time

from bench._pgscale_db import Pg, bound_literal, candlewick_env, range_partitions
from bench._results import ROOT

TRADES_PER_MINUTE = 4
WEEK_OFFSET = 345_600  # weeks start on Monday 00:00 UTC: the epoch was a Thursday
NAMED = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14_400, "1d": 86_400, "1w": 604_800}
ROLLUPS = ("5m", "15m", "1h", "4h", "1d", "1w")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
WORDS = {"minute": 60, "min": 60, "hour": 3600, "hourly": 3600, "day": 86_400, "daily": 86_400, "week": 604_800,
         "weekly": 604_800}

FIELDS = {
    "open": "open", "first": "open", "high": "high", "max": "high", "low": "low", "min": "low",
    "close": "close", "last": "close", "open_ts": "open_ts", "first_ts": "open_ts", "close_ts": "close_ts",
    "last_ts": "close_ts", "count": "count", "n": "count", "cnt": "count", "trades": "count", "trade_count": "count",
    "volume": "volume", "volume_sum": "volume", "vol": "volume", "sum_volume": "volume", "sum": "psum",
    "psum": "psum", "price_sum": "psum", "sum_price": "psum", "pv": "pv", "pv_sum": "pv", "sum_pv": "pv",
    "price_volume": "pv", "vwap": "vwap",
}
"""Candle column name -> the aggregate it holds."""
BUCKET_COLS = ("bucket_start", "bucket", "bucket_ts", "start", "start_ts", "ts", "time", "t", "open_time", "minute")
SYMBOL_COLS = ("symbol", "sym", "symbol_id", "sym_id", "instrument", "instrument_id")
INTERVAL_COLS = ("interval", "interval_s", "interval_seconds", "seconds", "width", "period", "resolution",
                 "timeframe", "iv", "step")
TIME_FIELDS = ("open_ts", "close_ts")


def price(i: int) -> float:
    return 100.0 + 20.0 * math.sin(i / 5000.0) + (i % 37) / 10.0


def bars_sql(start: int, minutes: int) -> str:
    """The 1-minute candles as a query: b, open, open_ts, high, low, close, close_ts, count, volume, psum, pv."""
    p = "(100 + 20 * sin(({i})::float8 / 5000.0) + mod({i}, 37)::float8 / 10.0)"
    return f"""SELECT b, o AS open, b + 1 AS open_ts, greatest(o, c) + 0.05 AS high, least(o, c) - 0.05 AS low,
        c AS close, b + 59 AS close_ts, {TRADES_PER_MINUTE}::bigint AS count, 2.0::float8 AS volume,
        o + c + greatest(o, c) + least(o, c) AS psum, (o + c + greatest(o, c) + least(o, c)) * 0.5 AS pv
    FROM (SELECT ({start}::bigint + i * 60) AS b, {p.format(i='i')} AS o, {p.format(i='i + 1')} AS c
          FROM generate_series(0::bigint, {minutes - 1}::bigint) i) g"""


def rollup_sql(start: int, minutes: int, seconds: int) -> str:
    off = WEEK_OFFSET if seconds == NAMED["1w"] else 0
    return f"""SELECT (floor((b - {off})::float8 / {seconds}) * {seconds} + {off})::bigint AS b,
        (array_agg(open ORDER BY b))[1] AS open, min(open_ts) AS open_ts, max(high) AS high, min(low) AS low,
        (array_agg(close ORDER BY b DESC))[1] AS close, max(close_ts) AS close_ts, sum(count)::bigint AS count,
        sum(volume) AS volume, sum(psum) AS psum, sum(pv) AS pv
    FROM ({bars_sql(start, minutes)}) m GROUP BY 1"""


class SeedError(Exception):
    """The schema has a candle table the seeder cannot fill."""


def interval_of(name: str) -> int | None:
    """A table's interval in seconds from its name (``ohlc_1m``, ``candles_4h``, ``bars_daily``)."""
    for part in name.lower().split("_"):
        m = re.fullmatch(r"(\d+)(s|m|h|d|w)", part)
        if m:
            return int(m.group(1)) * UNITS[m.group(2)]
        if part in WORDS:
            return WORDS[part]
    return None


def candle_tables(pg: Pg) -> dict[str, list[dict]]:
    """Every table of the schema (not a partition) with a bucket column and at least three
    aggregate columns, with its columns."""
    cols = pg.fetch("""SELECT c.relname AS table, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            a.attnotnull AS notnull, a.atthasdef AS hasdef, a.attidentity <> '' AS identity,
            a.attgenerated <> '' AS generated
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum""")
    tables: dict[str, list[dict]] = {}
    for c in cols:
        tables.setdefault(c["table"], []).append(c)
    out = {}
    for name, tc in tables.items():
        names = {c["name"] for c in tc}
        if "price" in names or not names & set(BUCKET_COLS) or not names & set(SYMBOL_COLS):
            continue
        if len(names & {"open", "high", "low", "close", "count", "sum", "psum", "pv", "pv_sum", "min", "max",
                        "last", "volume_sum"}) >= 3:
            out[name] = tc
    return out


def _time(expr: str, typ: str) -> str:
    if typ.startswith("timestamp with"):
        return f"to_timestamp({expr})"
    if typ.startswith("timestamp"):
        return f"(to_timestamp({expr}) AT TIME ZONE 'UTC')"
    return f"({expr})::{typ}"


def column_exprs(table: str, cols: list[dict], symbol_value: dict[str, str], interval: int | None) -> dict[str, str]:
    """Column name -> SQL expression over the bars query, for an INSERT ... SELECT into the table."""
    out = {}
    bucket = next(c["name"] for c in cols if c["name"] in BUCKET_COLS)
    for c in cols:
        name, typ = c["name"], c["type"]
        if c["generated"] or c["identity"]:
            continue
        if name in SYMBOL_COLS:
            expr = symbol_value["text" if "char" in typ or typ == "text" else "id"]
        elif name == bucket:
            expr = _time("b", typ)
        elif name in INTERVAL_COLS and interval is not None:
            label = next((k for k, v in NAMED.items() if v == interval), str(interval))
            expr = f"'{label}'" if "char" in typ or typ == "text" else f"{interval}::{typ}"
        elif name in FIELDS:
            field = FIELDS[name]
            expr = _time(field, typ) if field in TIME_FIELDS else \
                "(CASE WHEN volume > 0 THEN pv / volume END)" if field == "vwap" else f"({field})::{typ}"
        elif c["notnull"] and not c["hasdef"]:
            raise SeedError(f"{table}.{name} ({typ}) is NOT NULL without a default and the seeder does not know it")
        else:
            continue
        out[name] = expr
    return out


def symbol_values(pg: Pg, symbol: str) -> dict[str, str]:
    """The symbol as text, and its id when the schema keys symbols by a number (a row in ``symbols``)."""
    out = {"text": "'" + symbol.replace("'", "''") + "'", "id": "NULL"}
    if pg.val("SELECT to_regclass('symbols') IS NOT NULL"):
        pg.execute("INSERT INTO symbols (symbol) VALUES ($1) ON CONFLICT DO NOTHING", symbol)
        idcol = pg.val("""SELECT attname FROM pg_attribute WHERE attrelid = 'symbols'::regclass AND attnum > 0
            AND NOT attisdropped AND attname IN ('id', 'symbol_id', 'sid') LIMIT 1""")
        if idcol:
            out["id"] = str(pg.val(f'SELECT "{idcol}" FROM symbols WHERE symbol = $1', symbol))
    return out


def add_partitions(pg: Pg, table: str, lo: int, hi: int) -> str:
    """Partitions of a table partitioned by range of its bucket so that [lo, hi) has somewhere to go:
    slots of the width of its partitions (a day if it has none), aligned to multiples of it, less
    what its partitions cover, named ``<table>_<YYYYmmdd_HHMMSS>``. Any other partitioning gets a
    DEFAULT partition. Returns what was done."""
    info = range_partitions(pg, table)
    if info is None or info["key"] not in BUCKET_COLS:
        pg.execute(f"CREATE TABLE {table}_pgscale_default PARTITION OF {table} DEFAULT")
        return f"{table}: no partition held the history; created {table}_pgscale_default (DEFAULT)"
    width = int(min((h - low for low, h, _ in info["parts"]), default=86_400))
    covered = [(low, h) for low, h, _ in info["parts"]]
    made = 0
    for slot in range(lo // width * width, hi, width):
        a, b = slot, slot + width
        for low, h in covered:  # trim the slot to what no partition covers (partitions do not overlap)
            if low <= a < h:
                a = h
            if low < b <= h:
                b = low
        if a >= b:
            continue
        name = f"{table}_{time.strftime('%Y%m%d_%H%M%S', time.gmtime(a))}"
        pg.execute(f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ({bound_literal(pg, info, a)}) "
                   f"TO ({bound_literal(pg, info, b)})")
        made += 1
    return f"{table}: created {made} partitions of {width} s for the history"


def _insert(pg: Pg, table: str, exprs: dict[str, str], source: str, span: tuple[int, int], notes: list[str]) -> int:
    names = ", ".join(f'"{n}"' for n in exprs)
    sql = f"INSERT INTO {table} ({names}) SELECT {', '.join(exprs.values())} FROM ({source}) s ON CONFLICT DO NOTHING"
    try:
        status = pg.execute(sql, timeout=3600)
    except Exception as exc:  # noqa: BLE001 - one retry for a time-partitioned table without partitions there
        if "no partition" not in str(exc):
            raise
        notes.append(add_partitions(pg, table, *span))
        status = pg.execute(sql, timeout=3600)
    return int(status.rsplit(" ", 1)[1])


def seed_sql(pg: Pg, symbol: str, start: int, minutes: int) -> dict:
    """Insert the candles into every candle table of the schema; what was filled and how."""
    tables = candle_tables(pg)
    if not tables:
        raise SeedError("no candle table found (a table with a bucket column and OHLC or sum columns)")
    sym = symbol_values(pg, symbol)
    filled: dict[str, dict] = {}
    notes: list[str] = []
    plan = []  # (table, interval, interval column or None)
    icols = {name: next((c["name"] for c in cols if c["name"] in INTERVAL_COLS), None) for name, cols in tables.items()}
    minute_table = any(interval_of(name) == 60 for name in tables if icols[name] is None)
    for name in tables:
        icol = icols[name]
        if icol:  # one table for several intervals: the rollups, and 1m too if no table is 1m's own
            plan += [(name, NAMED[k], icol) for k in (ROLLUPS if minute_table else ("1m", *ROLLUPS))]
        elif (iv := interval_of(name)) is not None:
            plan.append((name, iv, None))
        else:
            notes.append(f"{name}: interval not told by its name or an interval column; left empty")
    plan.sort(key=lambda p: p[1])  # 1-minute tables first: a trigger on them may fill the rollups
    for name, iv, icol in plan:
        key = f"{name}[{iv}]" if icol else name
        exprs = column_exprs(name, tables[name], sym, iv if icol else None)
        symcol = next(c["name"] for c in tables[name] if c["name"] in SYMBOL_COLS)
        where = f'"{symcol}" = {exprs[symcol]}' + (f' AND "{icol}" = {exprs[icol]}' if icol else "")
        try:
            if iv > 60 and pg.val(f"SELECT EXISTS (SELECT 1 FROM {name} WHERE {where})"):
                filled[key] = {"interval": iv, "rows": int(pg.val(f"SELECT count(*) FROM {name} WHERE {where}")),
                               "by": "the schema (filled when the 1-minute rows went in)"}
                continue
            source = bars_sql(start, minutes) if iv == 60 else rollup_sql(start, minutes, iv)
            t = time.perf_counter()
            span = (start - (iv + WEEK_OFFSET if iv > 60 else 0), start + minutes * 60)
            rows = _insert(pg, name, exprs, source, span, notes)
        except Exception as exc:  # noqa: BLE001 - reported; only a 1-minute table is required
            notes.append(f"{key}: {type(exc).__name__}: {exc}")
            continue
        filled[key] = {"interval": iv, "rows": rows, "by": "SQL" + (" from the 1-minute rows" if iv > 60 else ""),
                       "seconds": round(time.perf_counter() - t, 2)}
    if not any(f["interval"] == 60 and f["rows"] for f in filled.values()):
        raise SeedError(f"no 1-minute candle table was filled: {filled} {notes}")
    for name in tables:
        pg.execute(f"VACUUM (ANALYZE) {name}", timeout=3600)  # as autovacuum would have, over 400 days
    return {"method": "sql", "tables": filled, "notes": notes}


def write_trades_csv(path: str, symbol: str, start: int, minutes: int) -> int:
    """The same four trades per minute as a CSV file (symbol, ts, price, volume) for ``candlewick import``."""
    with open(path, "w") as f:
        f.write("symbol,ts,price,volume\n")
        for i in range(minutes):
            b = start + i * 60
            o, c = price(i), price(i + 1)
            f.write(f"{symbol},{b + 1},{o!r},0.5\n{symbol},{b + 20},{max(o, c) + 0.05!r},0.5\n"
                    f"{symbol},{b + 40},{min(o, c) - 0.05!r},0.5\n{symbol},{b + 59},{c!r},0.5\n")
    return minutes * TRADES_PER_MINUTE


def seed_import(dsn: str, symbol: str, start: int, minutes: int) -> dict:
    """``python -m candlewick import FILE`` of the trades; raises RuntimeError if it fails."""
    with tempfile.NamedTemporaryFile(prefix="cw-pgscale-", suffix=".csv") as f:
        trades = write_trades_csv(f.name, symbol, start, minutes)
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "candlewick", "import", f.name], cwd=ROOT,
                              env=candlewick_env(dsn), capture_output=True, text=True, timeout=4 * 3600,
                              stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"candlewick import failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-1500:]}")
    return {"method": "import", "trades": trades, "seconds": seconds, "trades_per_s": trades / seconds}
