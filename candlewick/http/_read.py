"""The read routes: symbols, a symbol's latest tick, its history (raw ticks or candles), its metrics.

Each reads the store in bounded pieces: no request gathers more than O(limit) rows (a window, at
most its 1,440 minutes; the symbols, a page of at most 10,000 with a ``Link`` to the next),
whatever the store holds.
"""

from __future__ import annotations

import math
import time
from urllib.parse import urlencode

from quart import Response, request
from quart_trio import QuartTrio

from candlewick.domain import BUCKET, INTERVALS, bucket_of, num
from candlewick.engine import Engine
from candlewick.http._errors import error_response
from candlewick.http._history import CANDLE_LIMIT, CURSOR_RE, FILLS, RAW_LIMIT, candle_page, raw_cursor, raw_page
from candlewick.http._json import json_response, tick_json
from candlewick.http._query import bad_query, float_arg, int_arg, path_symbol, symbol_arg
from candlewick.schema import Bar
from candlewick.storage import Store

SYMBOLS_LIMIT = (1, 10_000, 10_000)
"""GET /api/v1/symbols: ``limit``'s bounds and default (a page of at most 10,000 symbols)."""


async def history(store: Store, symbol: str) -> Response:
    """GET /api/v1/ticks/{symbol}/history: the view and cursor arguments pick a raw or a candle page."""
    args = request.args
    view = args.get("view")
    if view is None:
        view = "ohlc1m" if args.get("agg") == "1m" or args.get("shape") == "candle" else "raw"
    if view not in ("raw", "ticks", "ohlc1m"):
        raise bad_query("view", "must be raw or ohlc1m")
    for name in ("before", "cursor"):
        if CURSOR_RE.fullmatch(args.get(name, "")) is None:
            raise bad_query(name, "must be epoch seconds or a nextCursor this server issued")
    before = args.get("before") or args.get("cursor")
    if view == "ohlc1m" or "interval" in args or "fill" in args:
        return await candles(store, symbol, before.partition("~")[0] if before else None)
    # one grammar for both views: any integer, clamped to 1-2000 (as the old API did); raw pages
    # hold at most 1000
    limit = min(int_arg("limit", CANDLE_LIMIT, clamp=True), RAW_LIMIT[1])
    items, nxt = await raw_page(store, symbol, raw_cursor(before), limit)
    return json_response({"items": items, "nextCursor": nxt})


async def candles(store: Store, symbol: str, before_raw: str | None) -> Response:
    limit = int_arg("limit", CANDLE_LIMIT, clamp=True)
    interval_name = request.args.get("interval", "1m")
    interval = INTERVALS.get(interval_name)
    if interval is None:
        raise bad_query("interval", "must be one of " + ", ".join(INTERVALS))
    fill = request.args.get("fill", "none")
    if fill not in FILLS:
        raise bad_query("fill", "must be " + " or ".join(FILLS))
    before = float_arg("before", before_raw) if before_raw else time.time() + 1
    items, nxt = await candle_page(store, symbol, interval, before, limit, fill)
    return json_response({"items": items, "nextCursor": nxt})


async def window_bar(store: Store, symbol: str, since: float, until: float) -> Bar | None:
    """The candle rule over ``symbol``'s trades with since <= ts < until, read in bounded pieces: the
    whole minutes inside as their 1m candles (one ``candles`` read), the partial minutes at either
    end as raw ticks (``window``, less than a minute each). None if there was no trade."""
    lo = bucket_of(since)
    lo += BUCKET if lo < since else 0  # the first whole minute
    hi = bucket_of(until)  # whole minutes end here
    if hi <= lo:
        return await store.window(symbol, since, until)
    parts = [await store.window(symbol, since, lo)] if since < lo else []
    minutes = await store.candles(symbol, BUCKET, hi, (hi - lo) // BUCKET)
    parts += [b for b in reversed(minutes) if b.bucket >= lo]
    if until > hi:
        parts.append(await store.window(symbol, hi, until))
    bar = None
    for part in parts:  # oldest first: disjoint times, so the merge is the candle rule
        if part is None:
            continue
        if bar is None:
            bar = part.copy(int(since))
        else:
            bar.merge(part)
    return bar


def register(app: QuartTrio, engine: Engine) -> None:
    @app.get("/api/v1/symbols")
    async def get_symbols():
        active = request.args.get("active", "true").lower()
        if active not in ("true", "false", "1", "0"):
            raise bad_query("active", "must be true or false")
        limit = int_arg("limit", SYMBOLS_LIMIT)
        after = symbol_arg("after")
        active_only = active in ("true", "1")
        rows = await engine.store.symbols(active_only, limit + 1, after)  # one more: is there a next page?
        response = json_response([{"symbol": s.symbol, "base": s.base, "quote": s.quote, "active": s.active}
                                  for s in rows[:limit]])
        if len(rows) > limit:
            query = urlencode({"active": "true" if active_only else "false", "limit": limit,
                               "after": rows[limit - 1].symbol})
            response.headers["Link"] = f'</api/v1/symbols?{query}>; rel="next"'
        return response

    @app.get("/api/v1/ticks/<path:rest>")
    async def get_ticks(rest: str):
        if rest.endswith("/history"):
            return await history(engine.store, path_symbol(rest[: -len("/history")]))
        symbol = path_symbol(rest)
        latest = await engine.store.latest(symbol)
        if latest is None:
            return error_response(404, "NOT_FOUND", f"no ticks for symbol {symbol}")
        return json_response(tick_json(latest))

    @app.get("/api/v1/metrics/<path:symbol>")
    async def get_metrics(symbol: str):
        symbol = path_symbol(symbol)
        if "window" in request.args:
            seconds = int_arg("window", (1, 86_400, 60))
            until = time.time() + 1e-6
            bar = await window_bar(engine.store, symbol, until - seconds, until)
            start, end = until - seconds, until
            if bar is None and await engine.store.latest(symbol) is None:
                return error_response(404, "NOT_FOUND", f"no ticks for symbol {symbol}")
        else:
            bars = await engine.store.candles(symbol, BUCKET, math.inf, 1)
            if not bars:
                return error_response(404, "NOT_FOUND", f"no ticks for symbol {symbol}")
            bar = bars[0]
            start, end = bar.bucket, bar.bucket + 60
        if bar is None:
            data = {"count": 0, "open": None, "min": None, "max": None, "avg": None, "vwap": None, "volume": 0,
                    "last": None}
        else:
            data = {"count": bar.count, "open": bar.open, "min": bar.low, "max": bar.high,
                    "avg": bar.psum / bar.count, "vwap": bar.vwap, "volume": bar.volume, "last": bar.close}
        return json_response({"symbol": symbol, "windowStart": num(start), "windowEnd": num(end), **data})
