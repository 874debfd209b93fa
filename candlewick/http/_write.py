"""The write routes: POST /api/v1/webhooks/ticks and /api/v1/webhooks/symbols, behind the API key."""

from __future__ import annotations

from quart import request
from quart_trio import QuartTrio

from candlewick.engine import Engine
from candlewick.errors import RequestError
from candlewick.http._auth import ApiKeyCheck
from candlewick.http._json import json_response
from candlewick.schema import decode_symbols, decode_ticks


def register(app: QuartTrio, engine: Engine) -> None:
    keys = ApiKeyCheck(engine.config.api_keys, engine.metrics.rejected)

    @app.post("/api/v1/webhooks/ticks")
    async def post_ticks():
        if (denied := keys.refusal()) is not None:
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
        if (denied := keys.refusal()) is not None:
            return denied
        items = decode_symbols(await request.get_data(cache=False))
        n = await engine.store.upsert_symbols(items)
        return json_response({"upserted": n, "skipped": 0}, 202)
