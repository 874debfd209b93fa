"""The write path's x-api-key check: one constant-time comparison with every configured key."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from quart import Response, request

from candlewick.http._errors import error_response


class ApiKeyCheck:
    """Checks the current request's ``x-api-key`` against ``keys``; refusals are counted in ``rejected``."""

    def __init__(self, keys: Iterable[str], rejected) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]
        self._rejected = rejected

    def valid(self, given: str | None) -> bool:
        digest = hashlib.sha256((given or "").encode()).digest()
        ok = False
        for known in self._digests:  # no early exit: time does not depend on which key matched
            ok |= hmac.compare_digest(digest, known)
        return ok and given is not None

    def refusal(self) -> Response | None:
        """The 401 for the current request, or None when its key is valid."""
        if not self.valid(request.headers.get("x-api-key")):
            self._rejected.labels("AUTH_REQUIRED").inc()
            return error_response(401, "AUTH_REQUIRED", "missing or invalid x-api-key header")
        return None
