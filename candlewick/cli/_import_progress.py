"""``candlewick import``'s progress: a bar redrawn in place on a terminal, else a log line now and then.

The bar (rows done of the total, rows/s over the last few seconds, time left) is written to
stderr directly, the one thing the import writes outside logging; a log line first takes it off
the terminal (``clear``). Without a terminal, an ``import_progress`` line comes every
``--progress-every`` seconds.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import deque

import structlog
import trio

log = structlog.get_logger("candlewick.import")

REDRAW = 0.25
"""Seconds between redraws of the bar on a terminal."""
WINDOW = 5.0
"""Seconds of history the rate (and so the time left) is taken over."""


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ImportProgress:
    """Rows done out of ``total``, in a phase (``checking`` the file, then ``importing`` it)."""

    def __init__(self, *, tty: bool, every: float) -> None:
        self.tty = tty
        self.every = REDRAW if tty else every
        self.phase = "checking"
        self.total = 0
        self.done = 0
        """Rows of the phase done so far (the thread doing the work writes it)."""
        self._history: deque[tuple[float, int]] = deque()
        self._drawn = False

    def start(self, phase: str, total: int, done: int = 0) -> None:
        self.clear()
        self.phase, self.total, self.done = phase, total, done
        self._history.clear()

    def rate(self) -> float:
        """Rows per second over the last ``WINDOW`` seconds."""
        now = time.monotonic()
        history = self._history
        history.append((now, self.done))
        while len(history) > 2 and now - history[1][0] >= WINDOW:
            history.popleft()
        (t0, d0), (t1, d1) = history[0], history[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    async def run(self) -> None:
        while True:
            await trio.sleep(self.every)
            self.show()

    def show(self) -> None:
        rate = self.rate()
        left = (self.total - self.done) / rate if rate > 0 and self.total else None
        if not self.tty:
            log.info("import_progress", phase=self.phase, rows=self.done, total=self.total, rate=round(rate),
                     eta_seconds=None if left is None else round(left))
            return
        width = shutil.get_terminal_size().columns
        if not self.total:  # a CSV being checked: its row count is what the check finds out
            line = f"{self.phase}  {self.done:,} rows  {rate:,.0f} rows/s"
        else:
            share = min(self.done / self.total, 1.0)
            tail = (f" {share:6.1%}  {self.done:,}/{self.total:,} rows  {rate:,.0f} rows/s  "
                    f"ETA {_clock(left) if left is not None else '--:--'}")
            head = f"{self.phase} "
            room = max(10, min(40, width - len(head) - len(tail) - 3))
            filled = int(share * room)
            line = f"{head}[{'#' * filled}{'.' * (room - filled)}]{tail}"
        self._write("\r\x1b[K" + line[:width - 1])
        self._drawn = True

    def clear(self) -> None:
        """Before a log line: take the bar off the terminal (it is drawn again at the next redraw)."""
        if self._drawn:
            self._write("\r\x1b[K")
            self._drawn = False

    @staticmethod
    def _write(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()
