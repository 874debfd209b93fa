"""The quart-trio application: every route of API.md over one running Engine."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
import uuid

import orjson
import trio
from quart import Response, g, request
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection

from candlewick.domain import INTERVALS, rollup, with_sma
from candlewick.engine import Engine
from candlewick.errors import RequestError, ValidationFailed
from candlewick.http._errors import error_response
from candlewick.http._errors import install as install_error_handlers
from candlewick.http._openapi import CURSOR_PATTERN
from candlewick.http._openapi import document as openapi_document
from candlewick.http._sse import HEADERS as SSE_HEADERS
from candlewick.http._sse import stream as sse_stream
from candlewick.runtime._broadcaster import num
from candlewick.schema import decode_symbols, decode_ticks
from candlewick.schema._decode import SYMBOL_RE

REQUEST_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")
INTEGER_RE = re.compile(r"-?[0-9]{1,18}")
CURSOR_RE = re.compile(CURSOR_PATTERN)  # epoch seconds, or a raw-history cursor "ts~seq"
RAW_LIMIT = (1, 1000, 200)
CANDLE_LIMIT = (1, 2000, 200)


def json_response(data, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status=status, content_type="application/json")


def _bad_query(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"invalid query parameter {name}: {message}", [{"path": f"query.{name}", "message": message}])


def _int_arg(name: str, bounds: tuple[int, int, int]) -> int:
    lo, hi, default = bounds
    raw = request.args.get(name)
    if raw is None:
        return default
    # int() alone would also take " 5", "+5", "5_0" and non-ASCII digits
    if INTEGER_RE.fullmatch(raw) is None or not lo <= (value := int(raw)) <= hi:
        raise _bad_query(name, f"must be an integer from {lo} to {hi}")
    return value


def _float_arg(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _bad_query(name, "must be epoch seconds") from None
    if not math.isfinite(value):
        raise _bad_query(name, "must be a finite number")
    return value


def _symbol(raw: str) -> str:
    if SYMBOL_RE.fullmatch(raw) is None:
        raise ValidationFailed("invalid symbol", [{"path": "path.symbol",
                                                   "message": "1-32 characters of A-Z a-z 0-9 . - _ : /"}])
    return raw


def _tick_json(t) -> dict:
    return {"symbol": t.symbol, "price": t.price, "ts": num(t.ts), "volume": t.volume}


def _bar_json(symbol: str, bar, sma) -> dict:
    return {"symbol": symbol, "ts": bar.bucket, "open": bar.open, "high": bar.high, "low": bar.low,
            "close": bar.close, "volume": bar.volume, "count": bar.count, "vwap": bar.vwap, "sma10": sma}


class _HTTPConnection(TrioASGIHTTPConnection):
    """quart-trio's connection, with the last write of a response shielded from the request's cancellation.

    When a response is complete before the request body has arrived (a 401, 404, 405 or 413 answered
    without reading it), hypercorn closes the connection from inside that last write; the same write
    ends the request stream, so quart-trio cancels the request at once, interrupting the close. The
    socket was then left open with nobody reading it, and the client's next request on that keep-alive
    connection hung until ``read_timeout`` (found by the schemathesis fuzz test).
    """

    async def _send_response(self, send, response) -> None:
        async def send_last_shielded(message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.move_on_after(10, shield=True):
                    await send(message)
            else:
                await send(message)

        await super()._send_response(send_last_shielded, response)


def create_app(engine: Engine) -> QuartTrio:
    config = engine.config
    app = QuartTrio(__name__, static_folder="static", static_url_path="/static")
    app.asgi_http_class = _HTTPConnection
    app.config.update(MAX_CONTENT_LENGTH=config.max_body_bytes, RESPONSE_TIMEOUT=None, BODY_TIMEOUT=30,
                      JSON_SORT_KEYS=False)
    install_error_handlers(app)
    key_digests = [hashlib.sha256(k.encode()).digest() for k in config.api_keys]
    allow_all = "*" in config.cors_allow_origins
    allowed = set(config.cors_allow_origins)
    http_hist = engine.metrics.http

    def key_ok(given: str | None) -> bool:
        digest = hashlib.sha256((given or "").encode()).digest()
        ok = False
        for known in key_digests:  # no early exit: time does not depend on which key matched
            ok |= hmac.compare_digest(digest, known)
        return ok and given is not None

    def require_key() -> Response | None:
        if not key_ok(request.headers.get("x-api-key")):
            engine.metrics.rejected.labels("AUTH_REQUIRED").inc()
            return error_response(401, "AUTH_REQUIRED", "missing or invalid x-api-key header")
        return None

    @app.before_request
    async def _start() -> None:
        g.t0 = time.perf_counter()
        rid = request.headers.get("x-request-id")
        g.request_id = rid if rid and REQUEST_ID_RE.fullmatch(rid) else uuid.uuid4().hex

    @app.after_request
    async def _finish(response: Response) -> Response:
        response.headers["x-request-id"] = getattr(g, "request_id", None) or uuid.uuid4().hex
        if request.content_length or request.headers.get("Transfer-Encoding"):
            complete = getattr(request.body, "_complete", None)
            if complete is not None and not complete.is_set():
                # Answered before its body arrived (401, 404, 405, 413): the server closes this
                # connection after the response, so tell the client not to send another on it.
                response.headers["Connection"] = "close"
        origin = request.headers.get("Origin")
        if origin and (allow_all or origin in allowed):
            response.headers["Access-Control-Allow-Origin"] = "*" if allow_all else origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Expose-Headers"] = "x-request-id, Retry-After"
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
                response.headers["Access-Control-Allow-Headers"] = \
                    "content-type, x-api-key, x-request-id, last-event-id, cache-control"
                response.headers["Access-Control-Max-Age"] = "600"
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        t0 = getattr(g, "t0", None)
        if t0 is not None:
            http_hist.labels(request.method, rule, str(response.status_code)).observe(time.perf_counter() - t0)
        return response

    # -- write path -------------------------------------------------------------------------
    @app.post("/api/v1/webhooks/ticks")
    async def post_ticks():
        if (denied := require_key()) is not None:
            return denied
        body = await request.get_data(cache=False)
        try:
            _, ticks = decode_ticks(body)
        except RequestError as exc:
            engine.metrics.rejected.labels(exc.code).inc()
            raise
        receipt = await engine.submit(ticks)
        return json_response(receipt.to_json(), 202)

    @app.post("/api/v1/webhooks/symbols")
    async def post_symbols():
        if (denied := require_key()) is not None:
            return denied
        items = decode_symbols(await request.get_data(cache=False))
        n = await engine.store.upsert_symbols(items)
        return json_response({"upserted": n, "skipped": 0}, 202)

    # -- read path --------------------------------------------------------------------------
    @app.get("/api/v1/symbols")
    async def get_symbols():
        active = request.args.get("active", "true").lower()
        if active not in ("true", "false", "1", "0"):
            raise _bad_query("active", "must be true or false")
        rows = await engine.store.symbols(active in ("true", "1"))
        return json_response([{"symbol": s.symbol, "base": s.base, "quote": s.quote, "active": s.active}
                              for s in rows])

    @app.get("/api/v1/ticks/<path:rest>")
    async def get_ticks(rest: str):
        if rest.endswith("/history"):
            return await _history(_symbol(rest[: -len("/history")]))
        symbol = _symbol(rest)
        latest = await engine.store.latest(symbol)
        if latest is None:
            return error_response(404, "NOT_FOUND", f"no ticks for symbol {symbol}")
        return json_response(_tick_json(latest))

    async def _history(symbol: str):
        args = request.args
        view = args.get("view")
        if view is None:
            view = "ohlc1m" if args.get("agg") == "1m" or args.get("shape") == "candle" else "raw"
        if view not in ("raw", "ticks", "ohlc1m"):
            raise _bad_query("view", "must be raw or ohlc1m")
        for name in ("before", "cursor"):
            if CURSOR_RE.fullmatch(args.get(name, "")) is None:
                raise _bad_query(name, "must be epoch seconds or a nextCursor this server issued")
        before = args.get("before") or args.get("cursor")
        if view == "ohlc1m" or "interval" in args:
            return await _candles(symbol, before.partition("~")[0] if before else None)
        # one grammar for both views: up to 2000 is a valid limit, raw pages hold at most 1000
        limit = min(_int_arg("limit", CANDLE_LIMIT), RAW_LIMIT[1])
        cursor = None
        if before:
            if "~" in before:
                ts_raw, _, seq_raw = before.partition("~")
                try:
                    cursor = (float(ts_raw), int(seq_raw))
                except ValueError:
                    raise _bad_query("cursor", "not a cursor this server issued") from None
            else:
                cursor = (_float_arg("before", before), -1)
        items, nxt = await engine.store.ticks_page(symbol, cursor, limit)
        return json_response({"items": [_tick_json(t) for t in items],
                              "nextCursor": f"{nxt[0]!r}~{nxt[1]}" if nxt else None})

    async def _candles(symbol: str, before_raw: str | None):
        limit = _int_arg("limit", CANDLE_LIMIT)
        interval_name = request.args.get("interval", "1m")
        interval = INTERVALS.get(interval_name)
        if interval is None:
            raise _bad_query("interval", "must be one of " + ", ".join(INTERVALS))
        before = _float_arg("before", before_raw) if before_raw else time.time() + 1
        store = engine.store
        if interval == 60:
            desc = await store.bars_before(symbol, before, limit + 9 + 1)
            page, context = desc[:limit], desc[limit:limit + 9]
            more = len(desc) > limit
        else:
            edge = math.ceil(before / interval) * interval
            want = limit + 10  # the page, 9 for SMA context, 1 to know whether more exist
            desc = []
            cursor = edge
            groups: set[int] = set()
            while len(groups) <= want:
                chunk = await store.bars_before(symbol, cursor, 2000)
                if not chunk:
                    break
                desc.extend(chunk)
                groups.update(b.bucket - b.bucket % interval for b in chunk)
                cursor = chunk[-1].bucket
            rolled = rollup(reversed(desc), interval)
            if len(groups) > want:
                rolled = rolled[1:]  # the oldest group may be cut short
            rolled.reverse()
            page, context = rolled[:limit], rolled[limit:limit + 9]
            more = len(rolled) > limit
        oldest_first = list(reversed(context)) + list(reversed(page))
        items = [_bar_json(symbol, bar, sma) for bar, sma in with_sma(oldest_first, len(context))]
        return json_response({"items": items, "nextCursor": page[-1].bucket if more and page else None})

    @app.get("/api/v1/metrics/<path:symbol>")
    async def get_metrics(symbol: str):
        symbol = _symbol(symbol)
        if "window" in request.args:
            seconds = _int_arg("window", (1, 86_400, 60))
            until = time.time() + 1e-6
            bar = await engine.store.window(symbol, until - seconds, until)
            start, end = until - seconds, until
            if bar is None and await engine.store.latest(symbol) is None:
                return error_response(404, "NOT_FOUND", f"no ticks for symbol {symbol}")
        else:
            bars = await engine.store.bars_before(symbol, math.inf, 1)
            if not bars:
                return error_response(404, "NOT_FOUND", f"no ticks for symbol {symbol}")
            bar = bars[0]
            start, end = bar.bucket, bar.bucket + 60
        if bar is None:
            data = {"count": 0, "min": None, "max": None, "avg": None, "vwap": None, "volume": 0, "last": None}
        else:
            data = {"count": bar.count, "min": bar.low, "max": bar.high, "avg": bar.psum / bar.count,
                    "vwap": bar.vwap, "volume": bar.volume, "last": bar.close}
        return json_response({"symbol": symbol, "windowStart": num(start), "windowEnd": num(end), **data})

    # -- realtime -------------------------------------------------------------------------------
    async def realtime():
        args = request.args
        symbols = None
        filter_symbol = args.get("symbol") or None
        names = [s for s in (args.get("symbols") or "").split(",") if s]
        if filter_symbol:
            names.append(filter_symbol)
        if names:
            symbols = frozenset(_symbol(s) for s in names)
        last_id = None
        raw_last = request.headers.get("Last-Event-ID") or args.get("lastEventId")
        if raw_last:
            try:
                last_id = int(raw_last)
            except ValueError:
                last_id = -1  # unknown id: the stream starts with resync
        body = sse_stream(engine.hub, symbols, last_id, config.sse_keepalive, filter_symbol,
                           config.sse_coalesce)
        response = Response(body, status=200, headers=SSE_HEADERS)
        response.timeout = None
        return response

    app.add_url_rule("/realtime/ticks", "realtime", realtime, methods=["GET"])
    app.add_url_rule("/api/v1/realtime/ticks", "realtime_v1", realtime, methods=["GET"])

    # -- health and operations -------------------------------------------------------------------
    async def liveness():
        return json_response({"ok": True})

    async def readiness():
        failed = engine.router.failed_symbols()
        checks = {"engine": "ok" if engine.state == "running" and not failed else "fail"}
        if engine.store.name == "memory":
            checks["db"] = "off"
        else:
            checks["db"] = "ok" if await engine.store.check() else "fail"
        checks["redis"] = "off" if engine.bus is None else ("ok" if await engine.bus.check() else "fail")
        ready = all(v in ("ok", "off") for v in checks.values())
        body = {"status": "ready" if ready else "not_ready", "checks": checks}
        if failed:
            body["failedActors"] = [f"symbol:{s}" for s in failed]
        return json_response(body, 200 if ready else 503)

    for path, name, view in (("/api/v1/health/liveness", "liveness_v1", liveness),
                             ("/health/liveness", "liveness", liveness),
                             ("/api/v1/health/readiness", "readiness_v1", readiness),
                             ("/health/readiness", "readiness", readiness)):
        app.add_url_rule(path, name, view, methods=["GET"])

    @app.get("/ops/health/supervisor")
    async def supervisor_tree():
        return json_response(engine.tree())

    async def prometheus():
        return Response(engine.metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_url_rule("/ops/metrics", "metrics", prometheus, methods=["GET"])
    app.add_url_rule("/api/v1/ops/metrics", "metrics_v1", prometheus, methods=["GET"])

    @app.get("/api/v1/openapi.json")
    async def openapi():
        return json_response(openapi_document())

    @app.get("/")
    async def dashboard():
        return await app.send_static_file("index.html")

    return app
