"""Every failure Candlewick reports, one exception per mode.

Hierarchy::

    CandlewickError
    ├── RequestError (ValueError)        -> 4xx; nothing of the request was applied
    │   ├── MalformedJSON                400 MALFORMED_JSON
    │   └── ValidationFailed             400 VALIDATION_ERROR (with details)
    └── Unavailable (RuntimeError)       -> 503 with Retry-After; nothing applied, retry later
        ├── Overloaded                   503 OVERLOADED: the pipeline stayed full past the deadline
        ├── SymbolFailed                 503 SYMBOL_FAILED: the symbol's actor passed its restart limit
        ├── ActorCrashed                 503 ACTOR_RESTARTED: the symbol's actor crashed holding the request
        ├── StoreUnavailable             503 STORE_UNAVAILABLE: the store did not commit in time
        ├── BusUnavailable               503 REDIS_UNAVAILABLE: Redis did not answer in time
        └── WrongRole                    503 WRONG_ROLE: this process's role does not serve it

    Outside a request (the command line; never an HTTP answer):
    BadSetting (ValueError)              a setting that cannot work: exit 2, one line naming it
    FeedRefused (RuntimeError)           ``candlewick feed``: the server refused a batch (4xx)
    FeedGaveUp (RuntimeError)            ``candlewick feed``: no batch got through after every retry
"""

from __future__ import annotations


class CandlewickError(Exception):
    code = "INTERNAL"
    status = 500


class RequestError(CandlewickError, ValueError):
    status = 400

    def __init__(self, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.details = details


class MalformedJSON(RequestError):
    code = "MALFORMED_JSON"


class ValidationFailed(RequestError):
    code = "VALIDATION_ERROR"


class Unavailable(CandlewickError, RuntimeError):
    status = 503
    retry_after = 1


class Overloaded(Unavailable):
    code = "OVERLOADED"


class SymbolFailed(Unavailable):
    code = "SYMBOL_FAILED"
    retry_after = 30


class ActorCrashed(Unavailable):
    code = "ACTOR_RESTARTED"


class StoreUnavailable(Unavailable):
    code = "STORE_UNAVAILABLE"
    retry_after = 2


class BusUnavailable(Unavailable):
    code = "REDIS_UNAVAILABLE"
    retry_after = 2


class WrongRole(Unavailable):
    """This process's role does not serve the operation (e.g. a worker asked to ingest)."""

    code = "WRONG_ROLE"
    retry_after = 5


class BadSetting(ValueError):
    """A setting has a value that cannot work: change ``setting`` to one of ``accepted``."""

    def __init__(self, setting: str, value: str, accepted: str) -> None:
        super().__init__(f"{setting}={value!r} is not accepted: use {accepted}")
        self.setting = setting
        self.value = value
        self.accepted = accepted


class FeedRefused(RuntimeError):
    """The server refused a batch (a 4xx other than 429): retrying would not help; the message says what to fix."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class FeedGaveUp(RuntimeError):
    """A batch failed on every attempt (no answer, or 429/5xx): the server is down or overloaded."""
