"""Every error leaves as the JSON envelope ``{"error": {"code", "message", "details"?}}``."""

from __future__ import annotations

import orjson
import structlog
from quart import Response
from werkzeug.exceptions import HTTPException

from candlewick.errors import CandlewickError, Unavailable

log = structlog.get_logger("candlewick.http")

HTTP_CODES = {400: "BAD_REQUEST", 401: "AUTH_REQUIRED", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
              408: "REQUEST_TIMEOUT", 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE",
              429: "TOO_MANY_REQUESTS", 503: "UNAVAILABLE"}


def error_response(status: int, code: str, message: str, details: list | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    body: dict = {"code": code, "message": message}
    if details:
        body["details"] = details
    resp = Response(orjson.dumps({"error": body}), status=status, content_type="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def install(app) -> None:
    @app.errorhandler(CandlewickError)
    async def _domain(exc: CandlewickError):
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Unavailable) else None
        return error_response(exc.status, exc.code, str(exc), getattr(exc, "details", None), headers)

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException):
        status = exc.code or 500
        message = {404: "no such route", 413: "request body is larger than the limit"}.get(status, exc.description)
        # The body of a refused oversize request was not read: close rather than reuse the connection.
        headers = {"Connection": "close"} if status == 413 else None
        if status == 405 and getattr(exc, "valid_methods", None):
            headers = {"Allow": ", ".join(exc.valid_methods)}  # RFC 9110: a 405 lists the methods allowed
        # Quart keeps an oversize body's 413 on the request (body._must_raise); once raised, its
        # traceback holds the request's frames, so request, body buffer (up to the limit) and
        # exception form a cycle that only the cyclic GC, tuned to run rarely, would free: each
        # chunked oversize request kept 4 MiB alive. Dropping the traceback breaks the cycle.
        exc.__traceback__ = None
        return error_response(status, HTTP_CODES.get(status, "HTTP_ERROR"), message or "", None, headers)

    @app.errorhandler(Exception)
    async def _internal(exc: Exception):
        log.error("unhandled_error", exc_info=exc)
        return error_response(500, "INTERNAL", "internal error; the request id identifies it in the logs")
