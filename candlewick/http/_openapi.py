"""Candlewick's machine-readable contract (OpenAPI 3.1), served at /api/v1/openapi.json."""

from __future__ import annotations

from functools import cache

from candlewick import __version__
from candlewick.domain import INTERVALS

NUM = {"type": "number"}
NULLNUM = {"type": ["number", "null"]}
ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    names = {400: "Invalid request", 401: "Missing or wrong x-api-key", 404: "Not found",
             413: "Body over the limit", 503: "Overloaded or unavailable; see Retry-After"}
    return {str(c): _json(ERROR, names[c]) for c in codes}


SYMBOL_PARAM = {"name": "symbol", "in": "path", "required": True,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9.\\-_:/]{1,32}$"}}
API_KEY = [{"apiKey": []}]
# Query grammars exactly as the server accepts them (CURSOR_PATTERN is also the one it parses with,
# in candlewick/http/_history.py); where a pattern admits "", an empty value means "not given".
SYMBOLS_PATTERN = "^,*([A-Za-z0-9.\\-_:/]{1,32}(,+|$))*$"
# finite by construction: at most 20 integer digits and a positive exponent of at most 2 digits
CURSOR_PATTERN = "^(-?[0-9]{1,20}(\\.[0-9]+)?([eE](-[0-9]{1,3}|\\+?[0-9]{1,2}))?(~[0-9]{1,18})?)?$"
BOOLEAN_PATTERN = "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)$"


@cache
def document() -> dict:
    tick = {"type": "object", "required": ["symbol", "price", "ts", "volume"],
            "properties": {"symbol": {"type": "string"}, "price": NUM, "ts": NUM, "volume": NUM}}
    candle = {"type": "object",
              "required": ["symbol", "ts", "open", "high", "low", "close", "volume", "count", "vwap", "sma10"],
              "properties": {"symbol": {"type": "string"}, "ts": {"type": "integer"}, "open": NUM, "high": NUM,
                             "low": NUM, "close": NUM, "volume": NUM, "count": {"type": "integer"},
                             "vwap": NULLNUM, "sma10": NULLNUM,
                             "filled": {"type": "boolean", "description": "with fill=prev only: true on an interval "
                                        "without trades (flat at the previous close, volume 0)"}}}
    history = {"anyOf": [  # an empty page is both shapes
        {"type": "object", "required": ["items", "nextCursor"], "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Tick"}},
            "nextCursor": {"type": ["string", "null"]}}},
        {"type": "object", "required": ["items", "nextCursor"], "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Candle"}},
            "nextCursor": {"type": ["integer", "null"]}}}]}
    tick_in = {"type": "object", "required": ["symbol", "price", "ts"], "properties": {
        "idempotencyKey": {"type": ["string", "null"], "minLength": 1, "maxLength": 200,
                           "description": "null or absent: source:symbol:ts:price:volume"},
        "symbol": {"type": "string", "pattern": "^[A-Za-z0-9.\\-_:/]{1,32}$"},
        "price": {"type": "number", "exclusiveMinimum": 0},
        "ts": {"oneOf": [{"type": "number", "minimum": 0}, {"type": "string", "format": "date-time"}]},
        "volume": {"type": ["number", "null"], "minimum": 0, "description": "null or absent: 0"}}}
    metrics = {"type": "object", "required": ["symbol", "windowStart", "windowEnd", "count", "open", "min", "max",
                                              "avg", "vwap", "volume", "last"],
               "properties": {"symbol": {"type": "string"}, "windowStart": NUM, "windowEnd": NUM,
                              "count": {"type": "integer"},
                              "open": {"type": ["number", "null"], "description": "the window's first trade price"},
                              "min": NULLNUM, "max": NULLNUM, "avg": NULLNUM, "vwap": NULLNUM, "volume": NUM,
                              "last": NULLNUM}}
    readiness = {"type": "object", "required": ["status", "checks"], "properties": {
        "status": {"enum": ["ready", "not_ready"]},
        "checks": {"type": "object", "additionalProperties": {"enum": ["ok", "fail", "off"]}}}}
    hello = {"type": "object", "required": ["ok", "connectedAt", "filterSymbol"], "properties": {
        "ok": {"const": True}, "connectedAt": {"type": "integer"}, "filterSymbol": {"type": ["string", "null"]}}}
    tick_event = {"type": "object", "required": ["kind", "symbol", "price", "ts", "volume", "sma10", "candle1m"],
                  "properties": {"kind": {"const": "tick"}, "symbol": {"type": "string"}, "price": NUM, "ts": NUM,
                                 "volume": NUM, "sma10": NULLNUM,
                                 "committedAt": {"type": "number", "description": "epoch seconds when the tick "
                                                 "was committed (extension: tick-to-client latency)"},
                                 "candle1m": {
                                     "type": "object", "required": ["bucket_start", "ts", "open", "high", "low",
                                                                    "close", "volume"],
                                     "properties": {"bucket_start": {"type": "integer"}, "ts": {"type": "integer"},
                                                    "open": NUM, "high": NUM, "low": NUM, "close": NUM,
                                                    "volume": NUM}}}}
    resync = {"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string"}}}
    sse_event = {"type": "object", "required": ["data"], "properties": {
        "event": {"enum": ["message", "resync"]}, "id": {"type": "string", "pattern": "^[0-9]+$"},
        "retry": {"type": "integer", "minimum": 0},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"oneOf": [hello, tick_event, resync]}}}}
    sse = {"description": "Server-Sent Events stream, one item per event",
           "content": {"text/event-stream": {"itemSchema": sse_event}}}
    q = lambda name, schema, desc="": {"name": name, "in": "query", "required": False, "schema": schema,  # noqa: E731
                                       "description": desc}
    realtime = {"get": {"summary": "Live ticks and candle updates (SSE)", "operationId": "realtime",
                        "parameters": [
                            q("symbol", {"type": "string", "pattern": "^([A-Za-z0-9.\\-_:/]{1,32})?$"}),
                            q("symbols", {"type": "string", "pattern": SYMBOLS_PATTERN},
                              "comma-separated symbols (extension)"),
                            q("lastEventId", {"type": "string"}, "as the Last-Event-ID header"),
                            {"name": "Last-Event-ID", "in": "header", "required": False,
                             "schema": {"type": "string"}, "description": "replay the events after this id"}],
                        "responses": {"200": sse, **_errors(400)}}}
    live = {"get": {"summary": "Liveness", "responses": {"200": _json({"type": "object", "required": ["ok"],
                                                                       "properties": {"ok": {"const": True}}})}}}
    ready = {"get": {"summary": "Readiness", "responses": {"200": _json(readiness), "503": _json(readiness)}}}
    prom = {"get": {"summary": "Prometheus metrics", "responses": {
        "200": {"description": "text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
    return {
        "openapi": "3.2.0",  # 3.2: itemSchema describes each Server-Sent Event
        "info": {"title": "Candlewick", "version": __version__,
                 "description": "Realtime market data: ticks in, 1-minute candles, SMA10 and live SSE out."},
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string", "pattern": "^[A-Z_]+$"}, "message": {"type": "string"},
                        "details": {"type": "array", "items": {"type": "object", "required": ["path", "message"],
                                                               "properties": {"path": {"type": "string"},
                                                                              "message": {"type": "string"}}}}}}}},
                "Tick": tick, "Candle": candle, "TickIn": tick_in, "Metrics": metrics},
        },
        "paths": {
            "/api/v1/webhooks/ticks": {"post": {
                "summary": "Ingest trade ticks (all-or-nothing)", "operationId": "postTicks", "security": API_KEY,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["source", "items"], "properties": {
                        "source": {"type": "string", "minLength": 1},
                        "items": {"type": "array", "minItems": 1, "maxItems": 10000,
                                  "items": {"$ref": "#/components/schemas/TickIn"}}}}}}},
                "responses": {"202": _json({"type": "object", "required": ["accepted", "duplicates", "queued",
                                                                           "rejected", "skipped"],
                                            "properties": {k: {"type": "integer", "minimum": 0} for k in
                                                           ("accepted", "duplicates", "queued", "rejected",
                                                            "skipped")}}, "Applied and committed"),
                              **_errors(400, 401, 413, 503)}}},
            "/api/v1/webhooks/symbols": {"post": {
                "summary": "Upsert symbols", "operationId": "postSymbols", "security": API_KEY,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["items"], "properties": {"items": {
                        "type": "array", "minItems": 1, "maxItems": 10000, "items": {
                            "type": "object", "required": ["symbol"], "properties": {
                                "symbol": {"type": "string", "pattern": "^[A-Za-z0-9.\\-_:/]{1,32}$"},
                                "base": {"type": "string", "maxLength": 32},
                                "quote": {"type": "string", "maxLength": 32}, "active": {"type": "boolean"}}}}}}}}},
                "responses": {"202": _json({"type": "object", "required": ["upserted", "skipped"], "properties": {
                    "upserted": {"type": "integer"}, "skipped": {"type": "integer"}}}),
                    **_errors(400, 401, 413)}}},
            "/api/v1/symbols": {"get": {
                "summary": "Symbols ordered by name", "operationId": "getSymbols",
                "parameters": [q("active", {"type": "string", "pattern": BOOLEAN_PATTERN},
                                 "true (default) lists active symbols only; false lists all"),
                               q("limit", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 10000},
                                 "symbols per page"),
                               q("after", {"type": "string", "pattern": "^[A-Za-z0-9.\\-_:/]{1,32}$"},
                                 "list the symbols after this one (exclusive): the next page")],
                "responses": {"200": {**_json({"type": "array", "items": {
                    "type": "object", "required": ["symbol", "base", "quote", "active"],
                    "properties": {"symbol": {"type": "string"}, "base": {"type": "string"},
                                   "quote": {"type": "string"}, "active": {"type": "boolean"}}}}),
                    "headers": {"Link": {"description": "when more symbols follow: "
                                         "</api/v1/symbols?active=...&limit=...&after=LAST>; rel=\"next\"",
                                         "schema": {"type": "string"}}}},
                    **_errors(400)}}},
            "/api/v1/ticks/{symbol}": {"get": {
                "summary": "Latest tick by trade time", "operationId": "getLatestTick", "parameters": [SYMBOL_PARAM],
                "responses": {"200": _json({"$ref": "#/components/schemas/Tick"}), **_errors(400, 404)}}},
            "/api/v1/ticks/{symbol}/history": {"get": {
                "summary": "Raw ticks newest first, or candles oldest first (view=ohlc1m)",
                "operationId": "getHistory",
                "parameters": [SYMBOL_PARAM, q("limit", {"type": "integer"},
                                               "any integer, clamped to 1-2000 (default 200); a raw page holds at "
                                               "most 1000 ticks"),
                               q("before", {"type": "string", "pattern": CURSOR_PATTERN},
                                 "epoch seconds (exclusive), or a nextCursor"),
                               q("cursor", {"type": "string", "pattern": CURSOR_PATTERN}, "alias of before"),
                               q("view", {"type": "string", "enum": ["raw", "ticks", "ohlc1m"]}),
                               q("agg", {"type": "string"}, "1m selects candles (as view=ohlc1m)"),
                               q("shape", {"type": "string"}, "candle selects candles (as view=ohlc1m)"),
                               q("interval", {"type": "string", "enum": list(INTERVALS)},
                                 "candle length (selects candles); 1w starts on Monday 00:00 UTC"),
                               q("fill", {"type": "string", "enum": ["none", "prev"]},
                                 "prev: intervals without trades between two candles are flat candles at the "
                                 "previous close, volume 0, filled: true (selects candles)")],
                "responses": {"200": _json(history), **_errors(400, 404)}}},  # 404: a path no route matches
            "/api/v1/metrics/{symbol}": {"get": {
                "summary": "Latest 1-minute metrics window, or the last N seconds", "operationId": "getMetrics",
                "parameters": [SYMBOL_PARAM, q("window", {"type": "integer", "minimum": 1, "maximum": 86400})],
                "responses": {"200": _json({"$ref": "#/components/schemas/Metrics"}), **_errors(400, 404)}}},
            "/realtime/ticks": realtime,
            "/api/v1/realtime/ticks": realtime,
            "/api/v1/health/liveness": live, "/health/liveness": live,
            "/api/v1/health/readiness": ready, "/health/readiness": ready,
            "/ops/health/supervisor": {"get": {"summary": "Supervision tree", "responses": {
                "200": _json({"type": "object", "required": ["name", "state", "children"]})}}},
            "/ops/metrics": prom, "/api/v1/ops/metrics": prom,
            "/api/v1/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": _json({"type": "object"})}}},
        },
    }
