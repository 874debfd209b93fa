"""The write routes: POST /api/v1/webhooks/ticks and /api/v1/webhooks/symbols, behind the API key."""

from __future__ import annotations

from quart import request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from candlewick.engine import Engine
from candlewick.errors import RequestError
from candlewick.http._auth import ApiKeyCheck
from candlewick.http._errors import HTTP_CODES
from candlewick.http._json import json_response
from candlewick.schema import decode_symbols, decode_tick_columns


def register(app: QuartTrio, engine: Engine) -> None:
    rejected = engine.metrics.rejected
    keys = ApiKeyCheck(engine.config.api_keys, rejected)

    async def body() -> bytes:
        """The request's body; a refusal while reading it (413 over the limit, 408 too slow) is counted."""
        try:
            return await request.get_data(cache=False)
        except HTTPException as exc:
            rejected.labels(HTTP_CODES.get(exc.code or 500, "HTTP_ERROR")).inc()
            raise

    @app.post("/api/v1/webhooks/ticks")
    async def post_ticks():
        if (denied := keys.refusal()) is not None:
            return denied
        data = await body()
        try:
            _, ticks = decode_tick_columns(data)
        except RequestError as exc:
            rejected.labels(exc.code).inc()
            raise
        receipt = await engine.submit(ticks)
        return json_response(receipt.to_json(), 202)

    @app.post("/api/v1/webhooks/symbols")
    async def post_symbols():
        if (denied := keys.refusal()) is not None:
            return denied
        items = decode_symbols(await body())
        n = await engine.store.upsert_symbols(items)
        return json_response({"upserted": n, "skipped": 0}, 202)
