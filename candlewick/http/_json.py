"""JSON bodies: the orjson response, and the wire shape of a tick and of a candle."""

from __future__ import annotations

import orjson
from quart import Response

from candlewick.domain import num


def json_response(data, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status=status, content_type="application/json")


def tick_json(t) -> dict:
    return {"symbol": t.symbol, "price": t.price, "ts": num(t.ts), "volume": t.volume}


def bar_json(symbol: str, bar, sma) -> dict:
    return {"symbol": symbol, "ts": bar.bucket, "open": bar.open, "high": bar.high, "low": bar.low,
            "close": bar.close, "volume": bar.volume, "count": bar.count, "vwap": bar.vwap, "sma10": sma}
