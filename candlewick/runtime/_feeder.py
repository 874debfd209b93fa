"""Feeder: synthetic trades (a geometric random walk per symbol), in-process or over HTTP.

``run_builtin`` submits straight to the router (so it feels the same backpressure as HTTP
clients); ``run_http`` is the external ``candlewick feed`` command that posts batches to a
URL at a given rate with idempotency keys, retrying a batch a bounded number of times with
backoff. It counts what it did in ``FeedTotals``, raises ``FeedRefused`` when the server says
no (a 4xx other than 429: retrying would not help) and ``FeedGaveUp`` when its retries run out.
Restart policy: the built-in feeder is a leaf of the engine; it does not restart.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence

import attrs
import httpx
import structlog
import trio

from candlewick.errors import FeedGaveUp, FeedRefused, Unavailable
from candlewick.schema import Tick

log = structlog.get_logger("candlewick.feeder")

START_PRICES = {"BTCUSDT": 68_000.0, "ETHUSDT": 3_500.0, "SOLUSDT": 160.0, "BNBUSDT": 580.0, "XRPUSDT": 0.55}


class RandomWalk:
    """Prices that move by a normal log-return each step (volatility ``sigma`` per step)."""

    def __init__(self, symbols: Sequence[str], *, sigma: float = 0.0005, seed: int | None = None,
                 source: str = "feeder") -> None:
        self.rng = random.Random(seed)
        self.prices = {s: START_PRICES.get(s, 100.0) for s in symbols}
        self.symbols = list(symbols)
        self.sigma = sigma
        self.run_id = secrets.token_hex(4)
        self.source = source
        self.n = 0

    def batch(self, size: int, now: float) -> list[Tick]:
        out = []
        rng = self.rng
        for _ in range(size):
            symbol = self.symbols[rng.randrange(len(self.symbols))]
            price = self.prices[symbol] * math.exp(rng.gauss(0.0, self.sigma))
            price = round(price, 6)
            self.prices[symbol] = price
            self.n += 1
            out.append(Tick(f"{self.source}-{self.run_id}:{symbol}:{self.n}", symbol, price, now,
                            round(rng.expovariate(2.0), 6)))
        return out


async def _paced(rate: float, step: Callable[[int, float], Awaitable[None]], total: int | None = None,
                 per_step: int | None = None) -> None:
    """Call ``step(size, now)`` with batches of ``per_step`` (default: ten a second) at ``rate`` ticks/s."""
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"a feed's rate must be a number above 0, not {rate!r}")
    per_step = per_step or max(1, round(rate / 10))
    interval = per_step / rate
    sent = 0
    next_at = trio.current_time()
    while total is None or sent < total:
        size = per_step if total is None else min(per_step, total - sent)
        await step(size, time.time())
        sent += size
        next_at += interval
        await trio.sleep_until(max(next_at, trio.current_time()))


async def run_builtin(submit: Callable[[list[Tick]], Awaitable[object]], symbols: Sequence[str], rate: float) -> None:
    walk = RandomWalk(symbols, source="builtin")
    log.info("feeder_started", symbols=list(symbols), rate=rate)

    async def step(size: int, now: float) -> None:
        try:
            await submit(walk.batch(size, now))
        except Unavailable as exc:
            log.warning("feeder_backoff", error=str(exc))
            await trio.sleep(1.0)

    await _paced(rate, step)


@attrs.define
class FeedTotals:
    """What a feed has done so far; ``run_http`` updates it as answers arrive."""

    posted: int = 0
    """Ticks the server acknowledged (202)."""
    accepted: int = 0
    """Of those, ticks applied."""
    duplicates: int = 0
    """Of those, ticks the server already had (a retried batch that had been committed)."""
    errors: int = 0
    """Attempts that failed: no answer, 429 or 5xx."""
    retries: int = 0
    """Attempts made again after a failed one."""


@attrs.frozen
class Retry:
    """A failed attempt that will be made again: ``status`` 0 means no answer (``detail`` says why)."""

    status: int
    detail: str
    attempt: int
    """The attempt that failed, from 1."""
    attempts: int
    """Attempts allowed per batch."""
    wait: float
    """Seconds before the next attempt."""


def _refusal(url: str, status: int, detail: str) -> FeedRefused:
    if status in (401, 403):
        return FeedRefused(f"the server refused the API key ({status}): pass the key it accepts with --api-key "
                           "or API_KEY", status)
    if status in (404, 405):
        return FeedRefused(f"no tick webhook at {url} ({status}): give the server's base URL, "
                           "e.g. http://127.0.0.1:8000", status)
    return FeedRefused(f"the server rejected a batch ({status}): {detail}", status)


async def run_http(url: str, api_key: str, *, symbols: Sequence[str], rate: float, batch: int | None = None,
                   total: int | None = None, retries: int = 8, seed: int | None = None,
                   totals: FeedTotals | None = None, on_retry: Callable[[Retry], None] | None = None) -> FeedTotals:
    """Post synthetic ticks to ``url`` (``.../api/v1/webhooks/ticks``) until ``total`` (or forever); return
    ``totals``. Each batch is tried at most ``retries + 1`` times, ``on_retry`` told of each retry."""
    walk = RandomWalk(symbols, seed=seed, source="feed")
    totals = FeedTotals() if totals is None else totals
    async with httpx.AsyncClient(timeout=30.0) as client:

        async def step(size: int, now: float) -> None:
            ticks = walk.batch(size, now)
            body = {"source": "feed", "items": [
                {"idempotencyKey": t.key, "symbol": t.symbol, "price": t.price, "ts": t.ts, "volume": t.volume}
                for t in ticks]}
            delay = 0.2
            for attempt in range(1, retries + 2):
                try:
                    r = await client.post(url, json=body, headers={"x-api-key": api_key})
                except httpx.TransportError as exc:
                    status, retry_after, detail = 0, None, f"{type(exc).__name__}: {exc}".rstrip(": ")
                else:
                    if r.status_code == 202:
                        try:
                            data = r.json()
                            accepted, duplicates = int(data["accepted"]), int(data["duplicates"])
                        except (ValueError, TypeError, KeyError) as exc:
                            raise FeedRefused(f"{url} answered 202 without a Candlewick receipt ({r.text[:80]!r}); "
                                              "is --url a Candlewick server?", 202) from exc
                        totals.posted += len(ticks)
                        totals.accepted += accepted
                        totals.duplicates += duplicates
                        return
                    status, retry_after, detail = r.status_code, r.headers.get("retry-after"), r.text[:200]
                    if status < 500 and status != 429:
                        raise _refusal(url, status, detail)
                totals.errors += 1
                if attempt > retries:
                    break
                wait = min(float(retry_after), 30.0) if retry_after and retry_after.isdigit() else delay
                if on_retry is not None:
                    on_retry(Retry(status, detail, attempt, retries + 1, wait))
                totals.retries += 1
                await trio.sleep(wait)
                delay = min(delay * 2, 5.0)
            if status == 0:
                raise FeedGaveUp(f"no answer from {url} after {retries + 1} attempts ({detail}): is the server running?")
            raise FeedGaveUp(f"the server answered {status} to {retries + 1} attempts ({detail}): it is down or overloaded")

        await _paced(rate, step, total, batch)
    return totals
