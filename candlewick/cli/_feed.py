"""``candlewick feed``: post synthetic ticks to a running server, showing progress, stopping cleanly.

On a terminal, one progress line (rate, accepted, duplicates, errors) is redrawn in place; otherwise
a ``feed_progress`` log line comes every ``--progress-every`` seconds. Ctrl-C (or SIGTERM) stops the
feed, and a ``feed_done`` line sums it up (exit 0). A refused feed (a wrong key, no webhook at the
URL) or a server still unreachable after the retries is one error line and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import structlog
import trio

from candlewick.config import COUNT, CSV, RATE, SECONDS, BadSetting, Kind, integer, setting
from candlewick.errors import FeedGaveUp, FeedRefused
from candlewick.runtime import FeedTotals, Retry, run_http
from candlewick.schema import SYMBOL_RE

log = structlog.get_logger("candlewick.feed")

DEFAULT_SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT"
WEBHOOK_PATH = "/api/v1/webhooks/ticks"
REDRAW = 0.5
"""Seconds between redraws of the progress line on a terminal."""


def _webhook_url(text: str) -> str:
    """The base URL (``http://host:port``) or the webhook's own; a path not ending in the webhook gets it."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port == 0:
        raise ValueError(text)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path if path.endswith(WEBHOOK_PATH) else path + WEBHOOK_PATH,
                       parts.query, ""))


def _symbols(text: str) -> list[str]:
    symbols = list(CSV.parse(text))  # type: ignore[call-overload]
    if not symbols or any(SYMBOL_RE.fullmatch(s) is None for s in symbols):
        raise ValueError(text)
    return symbols


URL = Kind(_webhook_url, "an http:// or https:// URL: the server's base URL (http://127.0.0.1:8000) or its webhook")
SYMBOLS = Kind(_symbols, "comma-separated symbols of 1-32 characters of A-Z a-z 0-9 . - _ : /")


def _flag(raw: str | None, name: str, kind: Kind, default: object) -> object:
    return default if raw is None else kind.read(name, raw)


class Progress:
    """The feed's progress on stderr: one line redrawn in place on a terminal, else a log line now and then."""

    def __init__(self, url: str, totals: FeedTotals, *, tty: bool, every: float) -> None:
        self.url = url
        self.totals = totals
        self.tty = tty
        self.every = REDRAW if tty else every
        self.started = self._at = time.monotonic()
        self._posted = 0
        self._drawn = False

    async def run(self) -> None:
        while True:
            await trio.sleep(self.every)
            self.show()

    def show(self) -> None:
        now = time.monotonic()
        rate = (self.totals.posted - self._posted) / max(now - self._at, 1e-9)
        self._at, self._posted = now, self.totals.posted
        t = self.totals
        if self.tty:
            line = (f"{rate:,.0f} ticks/s  accepted {t.accepted:,}  duplicates {t.duplicates:,}  errors {t.errors:,}"
                    "  (Ctrl-C to stop)")
            self._write("\r\x1b[K" + line[:shutil.get_terminal_size().columns - 1])  # one row: \r redraws it
            self._drawn = True
        else:
            log.info("feed_progress", rate=round(rate, 1), accepted=t.accepted, duplicates=t.duplicates, errors=t.errors)

    def clear(self) -> None:
        """Before a log line: take the progress line off the terminal (it is redrawn next time)."""
        if self._drawn:
            self._write("\r\x1b[K")
            self._drawn = False

    def retrying(self, retry: Retry) -> None:
        self.clear()
        event = "server_unreachable" if retry.status == 0 else "feed_retry"
        log.warning(event, url=self.url, status=retry.status or None, detail=retry.detail, attempt=retry.attempt,
                    attempts=retry.attempts, retry_in=retry.wait)

    def summary(self, interrupted: bool) -> None:
        self.clear()
        t = self.totals
        seconds = time.monotonic() - self.started
        log.info("feed_done", posted=t.posted, accepted=t.accepted, duplicates=t.duplicates, errors=t.errors,
                 retries=t.retries, seconds=round(seconds, 1), rate=round(t.posted / max(seconds, 1e-9), 1),
                 interrupted=interrupted)

    @staticmethod
    def _write(text: str) -> None:
        """The one place the feed writes to the terminal itself (the progress line), not through logging."""
        sys.stderr.write(text)
        sys.stderr.flush()


def feed(args: argparse.Namespace) -> int:
    url = _flag(args.url, "--url", URL, _webhook_url("http://127.0.0.1:8000"))
    rate = _flag(args.rate, "--rate", RATE, 50.0)
    batch = _flag(args.batch, "--batch", COUNT, None)
    total = _flag(args.total, "--total", COUNT, None)
    retries = _flag(args.retries, "--retries", integer(0), 8)
    every = _flag(args.progress_every, "--progress-every", SECONDS, 10.0)
    symbols = _flag(args.symbols, "--symbols", SYMBOLS, DEFAULT_SYMBOLS.split(","))
    keys = setting("api_keys") or ()
    key = args.api_key or os.environ.get("API_KEY") or (keys[0] if keys else None)  # type: ignore[index]
    if not key:
        raise BadSetting("--api-key", args.api_key or "", "the key the server accepts: --api-key, or API_KEY or "
                                                           "API_KEYS in the environment")
    for name in ("httpx", "httpcore"):  # a line per request is noise; the progress line says it all
        logging.getLogger(name).setLevel(logging.WARNING)
    log.info("feed_started", url=url, rate=rate, symbols=symbols, total=total)
    totals = FeedTotals()
    progress = Progress(str(url), totals, tty=sys.stderr.isatty(), every=float(every))  # type: ignore[arg-type]

    async def main() -> FeedRefused | FeedGaveUp | bool:
        """The failure, else whether a signal stopped the feed."""
        async with trio.open_nursery() as nursery:
            stopped = await nursery.start(_stop_on_signal, nursery.cancel_scope)
            nursery.start_soon(progress.run)
            try:
                await run_http(str(url), key, symbols=symbols, rate=rate, batch=batch, total=total,  # type: ignore[arg-type]
                               retries=retries, totals=totals, on_retry=progress.retrying)  # type: ignore[arg-type]
            except (FeedRefused, FeedGaveUp) as exc:
                return exc
            finally:
                nursery.cancel_scope.cancel()
        return stopped.is_set()

    outcome = trio.run(main)
    if isinstance(outcome, Exception):
        progress.clear()
        log.error("feed_refused" if isinstance(outcome, FeedRefused) else "feed_gave_up", url=url, error=str(outcome))
        if totals.posted:
            progress.summary(interrupted=False)
        return 1
    progress.summary(interrupted=outcome)
    return 0


async def _stop_on_signal(scope: trio.CancelScope, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Ctrl-C or SIGTERM: cancel ``scope`` (the feed) and report it through the event handed back."""
    stopped = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started(stopped)
        async for _ in signals:
            stopped.set()
            scope.cancel()
            return
