"""Admission control: a FIFO budget of ticks in flight, the memory bound of the ingest path.

A request takes as many units as it has ticks before anything of it is enqueued; they come back
when its ticks are committed. See docs/ARCHITECTURE.md, "Backpressure rules".
"""

from __future__ import annotations

from collections import deque

import attrs
import trio


@attrs.frozen
class AdmissionStatistics:
    """The ingest budget as the supervision tree shows it."""

    in_flight_ticks: int
    """Ticks admitted and not yet committed or refused."""
    peak: int
    """Most ticks ever in flight at once."""
    capacity: int
    """The budget: a request that does not fit waits (then 503 OVERLOADED)."""


class Admission:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self.peak = 0
        self._waiters: deque[tuple[int, trio.Event]] = deque()

    async def acquire(self, n: int) -> None:
        """Wait (first come, first served) until ``n`` units are free, then take them."""
        n = min(n, self.capacity)
        if not self._waiters and self.in_use + n <= self.capacity:
            # trio's idiom: a cancellation lands before the units are taken, never after
            await trio.lowlevel.checkpoint_if_cancelled()
            self._take(n)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        entry = (n, trio.Event())
        self._waiters.append(entry)
        try:
            await entry[1].wait()
        except BaseException:
            if entry[1].is_set():  # granted just as we were cancelled: give it back
                self.release(n)
            else:
                self._waiters.remove(entry)
                self._wake()
            raise

    def statistics(self) -> AdmissionStatistics:
        return AdmissionStatistics(self.in_use, self.peak, self.capacity)

    def release(self, n: int) -> None:
        self.in_use -= min(n, self.capacity)
        self._wake()

    def _take(self, n: int) -> None:
        self.in_use += n
        if self.in_use > self.peak:
            self.peak = self.in_use

    def _wake(self) -> None:
        while self._waiters and self.in_use + self._waiters[0][0] <= self.capacity:
            n, event = self._waiters.popleft()
            self._take(n)
            event.set()
