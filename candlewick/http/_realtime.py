"""The realtime route: GET /realtime/ticks and /api/v1/realtime/ticks, a Server-Sent Events stream."""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio

from candlewick.engine import Engine
from candlewick.http._query import path_symbol
from candlewick.http._sse import HEADERS as SSE_HEADERS
from candlewick.http._sse import stream as sse_stream


def register(app: QuartTrio, engine: Engine) -> None:
    config = engine.config

    async def realtime():
        args = request.args
        symbols = None
        filter_symbol = args.get("symbol") or None
        names = [s for s in (args.get("symbols") or "").split(",") if s]
        if filter_symbol:
            names.append(filter_symbol)
        if names:
            symbols = frozenset(path_symbol(s) for s in names)
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
