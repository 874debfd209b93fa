"""The hooks around every request: the request id, Connection: close, CORS headers, the duration histogram, the access log.

The request id is bound in structlog's context variables for the request's own task, so every log
line of the request (``unhandled_error`` included) carries it; it is cleared when the request ends.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from quart import Response, g, request
from quart_trio import QuartTrio

from candlewick.config import Config

REQUEST_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")
# RFC 9110 field names: a comma-separated list of tokens, as Access-Control-Request-Headers holds
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
HEADER_LIST_RE = re.compile(rf"[ \t]*{_TOKEN}(?:[ \t]*,[ \t]*{_TOKEN})*[ \t]*")
HEADER_LIST_MAX = 1024
# answered when a preflight names no headers (or an unreadable list): every header a known client sends
ALLOW_HEADERS = "content-type, x-api-key, x-request-id, last-event-id, cache-control, authorization, x-user"

access_log = structlog.get_logger("candlewick.access")


def allow_headers(requested: str | None) -> str:
    """What a preflight's Access-Control-Allow-Headers answers: the headers it asked for, when they are a list
    of header names (the browser sends the request only if every one is allowed), else the fixed list."""
    if requested and len(requested) <= HEADER_LIST_MAX and HEADER_LIST_RE.fullmatch(requested):
        return ", ".join(name.strip().lower() for name in requested.split(","))
    return ALLOW_HEADERS


def add_cors_headers(response: Response, allowed: frozenset[str], allow_all: bool) -> None:
    """CORS headers for an origin in ``allowed`` (any origin with ``allow_all``); none for another origin.

    ``Vary`` is added to, never replaced: every answer depends on the Origin (whether it was sent and
    which), a preflight's also on the headers it asked for.
    """
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if not origin or not (allow_all or origin in allowed):
        return
    response.headers["Access-Control-Allow-Origin"] = "*" if allow_all else origin
    response.headers["Access-Control-Expose-Headers"] = "x-request-id, Retry-After, Link"
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = allow_headers(
            request.headers.get("Access-Control-Request-Headers"))
        response.vary.add("Access-Control-Request-Headers")
        response.headers["Access-Control-Max-Age"] = "600"


def log_access(status: int, request_id: str, seconds: float) -> None:
    """One access-log line: 2xx/3xx at info, 4xx and 503 at warning, other 5xx at error."""
    if status < 400:
        emit = access_log.info
    elif status < 500 or status == 503:  # a 503 is a refusal the client retries, not a fault here
        emit = access_log.warning
    else:
        emit = access_log.error
    emit("request", method=request.method, path=request.path, status=status,
         duration_ms=round(seconds * 1000, 3), request_id=request_id)


def install(app: QuartTrio, config: Config, http_hist) -> None:
    """Install the request hooks; ``http_hist`` is labelled by method, route rule and status."""
    allow_all = "*" in config.cors_allow_origins
    allowed = frozenset(config.cors_allow_origins)
    cors = bool(allowed)

    @app.before_request
    async def _start() -> None:
        g.t0 = time.perf_counter()
        rid = request.headers.get("x-request-id")
        g.request_id = rid if rid and REQUEST_ID_RE.fullmatch(rid) else uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=g.request_id)

    @app.after_request
    async def _finish(response: Response) -> Response:
        request_id = getattr(g, "request_id", None) or uuid.uuid4().hex
        response.headers["x-request-id"] = request_id
        if request.content_length or request.headers.get("Transfer-Encoding"):
            complete = getattr(request.body, "_complete", None)
            if complete is not None and not complete.is_set():
                # Answered before its body arrived (401, 404, 405, 413): the server closes this
                # connection after the response, so tell the client not to send another on it.
                response.headers["Connection"] = "close"
        if cors:
            add_cors_headers(response, allowed, allow_all)
        # An SSE response is logged here, as its stream starts: its duration is the time to the stream.
        t0 = getattr(g, "t0", None)
        seconds = time.perf_counter() - t0 if t0 is not None else 0.0
        if t0 is not None:
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            http_hist.labels(request.method, rule, str(response.status_code)).observe(seconds)
        log_access(response.status_code, request_id, seconds)
        return response

    @app.teardown_request
    async def _end(exc: BaseException | None) -> None:
        structlog.contextvars.unbind_contextvars("request_id")
