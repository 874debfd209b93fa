"""Request accounting, sans-IO: what became of each of a request's ticks, across symbols and flushes."""

from __future__ import annotations

from collections.abc import Callable

from candlewick.errors import CandlewickError
from candlewick.schema import Receipt


class Ticket:
    """One request's accounting: finished when every symbol part of it is committed (or failed).

    Not a message but a shared record: the router creates it (with ``on_done``, which wakes the
    request), the dispatcher adds the duplicate/skipped counts, the flusher marks parts committed
    or failed. ``accepted`` is what is left of the request's ticks once duplicates and skipped
    ones are taken away.
    """

    __slots__ = ("ticks", "parts", "total_parts", "duplicates", "skipped", "error", "finished", "expired", "committing",
                 "_failed_parts", "_on_done")

    expirations = 0
    """How many tickets ever expired (all routers): a dispatcher that saw the same number last
    time need not look at each part's ticket."""

    def __init__(self, ticks: int, parts: int, on_done: Callable[[], None] | None = None) -> None:
        self.ticks = ticks
        self.parts = self.total_parts = parts
        """Symbol parts not yet committed or failed."""
        self.duplicates = self.skipped = self._failed_parts = 0
        self.error: CandlewickError | None = None
        self.finished = False
        """Every part is committed or failed; ``on_done`` has been called."""
        self.expired = False
        """The request gave up waiting (503): no part of it may be applied or written any more."""
        self.committing = False
        """The flusher has begun writing a part: the request must wait for the outcome."""
        self._on_done = on_done

    @property
    def accepted(self) -> int:
        return self.ticks - self.duplicates - self.skipped

    def try_expire(self) -> bool:
        """Give up on this ticket unless a write of it is under way; True if it is now expired."""
        if not self.committing and not self.finished and not self.expired:
            self.expired = True
            Ticket.expirations += 1
        return self.expired

    def resolve(self, parts: int) -> None:
        """``parts`` of the request's symbol parts are committed."""
        self.parts -= parts
        if self.parts == 0:
            self._finish()

    def fail(self, error: CandlewickError, parts: int = 1) -> None:
        if self.error is None:
            self.error = error
        self._failed_parts += parts
        self.parts -= parts
        if self.parts == 0:
            self._finish()

    def _finish(self) -> None:
        if self.error is not None and self.committed_parts:
            self.error = self._partly_committed(self.error)
        self.finished = True
        if self._on_done is not None:
            self._on_done()

    @property
    def committed_parts(self) -> int:
        """Symbol parts committed, when done: a failed request may have some (parts of different
        symbols are separate writes)."""
        return self.total_parts - self.parts - self._failed_parts

    def _partly_committed(self, error: CandlewickError) -> CandlewickError:
        """The same refusal (code, status, Retry-After), saying what was committed: a client must
        not believe that nothing of the request was applied. Its retry is still right: the
        committed ticks come back as duplicates, the rest is applied."""
        n, total = self.committed_parts, self.total_parts
        message = (f"{error} [part of this request was committed before the failure: {n} of its {total} "
                   "symbols. Retry the whole request: ticks already committed come back as duplicates, "
                   "the rest are applied]")
        partly = type(error).__new__(type(error))
        partly.__dict__.update(error.__dict__)
        Exception.__init__(partly, message)
        return partly

    def receipt(self) -> Receipt:
        return Receipt(self.accepted, self.duplicates, self.skipped)
