"""The HTTP ceiling: a quart-trio endpoint on hypercorn that only reads and parses the ticks body.

``python -m bench._ceiling --host H --port P`` serves ``POST /api/v1/webhooks/ticks`` (read the
body, ``orjson.loads`` it, answer 202 with the item count as ``accepted``) and
``GET /health/readiness``, with the same stack and server settings a user would start Candlewick
with. What ``bench http`` reaches against it is the rate no quart-trio ingest endpoint can beat on
this machine: Candlewick's rate divided by it is the share of the framework's budget left for the
work itself (decode, dedupe, candles, commit).
"""

from __future__ import annotations

import argparse

import orjson
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio


def create_app() -> QuartTrio:
    app = QuartTrio(__name__)
    app.config.update(MAX_CONTENT_LENGTH=4 * 1024 * 1024, RESPONSE_TIMEOUT=None, BODY_TIMEOUT=30)

    @app.post("/api/v1/webhooks/ticks")
    async def ticks() -> Response:
        body = orjson.loads(await request.get_data(cache=False))
        n = len(body["items"])
        return Response(orjson.dumps({"accepted": n, "duplicates": 0, "skipped": 0}), status=202,
                        content_type="application/json")

    @app.get("/health/readiness")
    async def ready() -> Response:
        return Response(b'{"status":"ready"}', content_type="application/json")

    return app


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench._ceiling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    hc = HyperConfig()
    hc.bind = [f"{args.host}:{args.port}"]
    hc.keep_alive_timeout = 5  # as candlewick run's server
    hc.accesslog = None
    hc.include_server_header = False
    trio.run(serve, create_app(), hc)


if __name__ == "__main__":
    main()
