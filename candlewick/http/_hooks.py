"""The hooks around every request: the request id, Connection: close, CORS headers, the duration histogram."""

from __future__ import annotations

import re
import time
import uuid

from quart import Response, g, request
from quart_trio import QuartTrio

from candlewick.config import Config

REQUEST_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")


def install(app: QuartTrio, config: Config, http_hist) -> None:
    """Install the before/after-request hooks; ``http_hist`` is labelled by method, route rule and status."""
    allow_all = "*" in config.cors_allow_origins
    allowed = set(config.cors_allow_origins)

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
