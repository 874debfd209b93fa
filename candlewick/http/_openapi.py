"""Candlewick's machine-readable contract (OpenAPI 3.1), served at /api/v1/openapi.json."""

from __future__ import annotations

from functools import cache

from candlewick import __version__

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


@cache
def document() -> dict:
    tick = {"type": "object", "required": ["symbol", "price", "ts", "volume"],
            "properties": {"symbol": {"type": "string"}, "price": NUM, "ts": NUM, "volume": NUM}}
    candle = {"type": "object",
              "required": ["symbol", "ts", "open", "high", "low", "close", "volume", "count", "vwap", "sma10"],
              "properties": {"symbol": {"type": "string"}, "ts": {"type": "integer"}, "open": NUM, "high": NUM,
                             "low": NUM, "close": NUM, "volume": NUM, "count": {"type": "integer"},
                             "vwap": NULLNUM, "sma10": NULLNUM}}
    history = {"oneOf": [
        {"type": "object", "required": ["items", "nextCursor"], "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Tick"}},
            "nextCursor": {"type": ["string", "null"]}}},
        {"type": "object", "required": ["items", "nextCursor"], "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Candle"}},
            "nextCursor": {"type": ["integer", "null"]}}}]}
    tick_in = {"type": "object", "required": ["symbol", "price", "ts"], "properties": {
        "idempotencyKey": {"type": "string", "minLength": 1, "maxLength": 200},
        "symbol": {"type": "string", "pattern": "^[A-Za-z0-9.\\-_:/]{1,32}$"},
        "price": {"type": "number", "exclusiveMinimum": 0},
        "ts": {"oneOf": [{"type": "number", "minimum": 0}, {"type": "string", "format": "date-time"}]},
        "volume": {"type": "number", "minimum": 0}}}
    metrics = {"type": "object", "required": ["symbol", "windowStart", "windowEnd", "count", "min", "max", "avg",
                                              "vwap", "volume", "last"],
               "properties": {"symbol": {"type": "string"}, "windowStart": NUM, "windowEnd": NUM,
                              "count": {"type": "integer"}, "min": NULLNUM, "max": NULLNUM, "avg": NULLNUM,
                              "vwap": NULLNUM, "volume": NUM, "last": NULLNUM}}
    readiness = {"type": "object", "required": ["status", "checks"], "properties": {
        "status": {"enum": ["ready", "not_ready"]},
        "checks": {"type": "object", "additionalProperties": {"enum": ["ok", "fail", "off"]}}}}
    sse = {"description": "Server-Sent Events stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}
    q = lambda name, schema, desc="": {"name": name, "in": "query", "required": False, "schema": schema,  # noqa: E731
                                       "description": desc}
    realtime = {"get": {"summary": "Live ticks and candle updates (SSE)", "operationId": "realtime",
                        "parameters": [q("symbol", {"type": "string"}), q("symbols", {"type": "string"})],
                        "responses": {"200": sse, **_errors(400)}}}
    live = {"get": {"summary": "Liveness", "responses": {"200": _json({"type": "object", "required": ["ok"],
                                                                       "properties": {"ok": {"const": True}}})}}}
    ready = {"get": {"summary": "Readiness", "responses": {"200": _json(readiness), "503": _json(readiness)}}}
    prom = {"get": {"summary": "Prometheus metrics", "responses": {
        "200": {"description": "text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
    return {
        "openapi": "3.1.0",
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
                "parameters": [q("active", {"type": "string", "enum": ["true", "false"]})],
                "responses": {"200": _json({"type": "array", "items": {
                    "type": "object", "required": ["symbol", "base", "quote", "active"],
                    "properties": {"symbol": {"type": "string"}, "base": {"type": "string"},
                                   "quote": {"type": "string"}, "active": {"type": "boolean"}}}}),
                    **_errors(400)}}},
            "/api/v1/ticks/{symbol}": {"get": {
                "summary": "Latest tick by trade time", "operationId": "getLatestTick", "parameters": [SYMBOL_PARAM],
                "responses": {"200": _json({"$ref": "#/components/schemas/Tick"}), **_errors(400, 404)}}},
            "/api/v1/ticks/{symbol}/history": {"get": {
                "summary": "Raw ticks newest first, or 1-minute candles oldest first (view=ohlc1m)",
                "operationId": "getHistory",
                "parameters": [SYMBOL_PARAM, q("limit", {"type": "integer", "minimum": 1, "maximum": 2000}),
                               q("before", {"type": "string"}), q("cursor", {"type": "string"}),
                               q("view", {"type": "string", "enum": ["raw", "ohlc1m"]}),
                               q("agg", {"type": "string", "enum": ["1m"]}),
                               q("shape", {"type": "string", "enum": ["candle"]}),
                               q("interval", {"type": "string", "enum": ["1m", "5m", "15m", "1h", "1d"]})],
                "responses": {"200": _json(history), **_errors(400)}}},
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
