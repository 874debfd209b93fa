"""Feeder: synthetic trades (a geometric random walk per symbol), in-process or over HTTP.

``run_builtin`` submits straight to the router (so it feels the same backpressure as HTTP
clients); ``run_http`` is the external ``candlewick feed`` command that posts batches to a
URL at a given rate with idempotency keys and retries with backoff, like the old feeder.
Restart policy: the built-in feeder is a leaf of the engine; it does not restart.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence

import httpx
import structlog
import trio

from candlewick.errors import Unavailable
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


async def run_http(url: str, api_key: str, *, symbols: Sequence[str], rate: float, batch: int | None = None,
                   total: int | None = None, max_retries: int = 8, seed: int | None = None) -> dict[str, int]:
    """Post synthetic ticks to ``url`` (``.../api/v1/webhooks/ticks``); return the totals."""
    walk = RandomWalk(symbols, seed=seed, source="feed")
    totals = {"posted": 0, "accepted": 0, "duplicates": 0, "retries": 0}
    async with httpx.AsyncClient(timeout=30.0) as client:

        async def step(size: int, now: float) -> None:
            ticks = walk.batch(size, now)
            body = {"source": "feed", "items": [
                {"idempotencyKey": t.key, "symbol": t.symbol, "price": t.price, "ts": t.ts, "volume": t.volume}
                for t in ticks]}
            delay = 0.2
            for attempt in range(max_retries + 1):
                try:
                    r = await client.post(url, json=body, headers={"x-api-key": api_key})
                except httpx.TransportError as exc:
                    status, retry_after, detail = 0, None, str(exc)
                else:
                    if r.status_code == 202:
                        data = r.json()
                        totals["posted"] += len(ticks)
                        totals["accepted"] += data["accepted"]
                        totals["duplicates"] += data["duplicates"]
                        return
                    status, retry_after, detail = r.status_code, r.headers.get("retry-after"), r.text[:200]
                    if status < 500 and status != 429:
                        raise RuntimeError(f"feed rejected with {status}: {detail}")
                totals["retries"] += 1
                wait = float(retry_after) if retry_after else delay
                log.warning("feed_retry", status=status, attempt=attempt + 1, wait=wait, detail=detail)
                await trio.sleep(wait)
                delay = min(delay * 2, 10.0)
            raise RuntimeError(f"gave up after {max_retries} retries")

        await _paced(rate, step, total, batch)
    return totals
