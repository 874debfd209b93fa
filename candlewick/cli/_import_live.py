"""``candlewick import``: the ticks a running engine still holds in memory go through its webhook.

A running engine keeps each symbol's last ``LATENESS`` seconds (its dedupe keys and changeable
candles) in memory, so ticks that recent must not be written to the database behind its back.
They are posted to the server's webhook (``--url``, ``--api-key``) as ``candlewick feed`` does,
with the import's ``source``: a tick without a key of its own gets there the same default key
(``source:symbol:ts:price:volume``) it would get in the database. A request whose ticks the server
skipped (older than its horizon by the time they arrived) goes to the database instead, where the
key digest keeps whatever the server did commit from counting twice.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import httpx
import numpy as np
import orjson
import pyarrow as pa
import trio

from candlewick.errors import FeedGaveUp, FeedRefused
from candlewick.runtime import Retry

REQUEST_TICKS = 5_000
"""Ticks per request (the webhook takes up to 10,000 and 4 MiB)."""


@attrs.define
class LiveTotals:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    skipped: int = 0
    """Ticks the server skipped as too late; they were written to the database instead."""


def _items(symbols: list[str], sym: np.ndarray, price: np.ndarray, ts: np.ndarray, volume: np.ndarray,
           keys: list[str | None] | None) -> list[dict]:
    names = np.array(symbols, dtype=object)[sym].tolist()
    items = [{"symbol": s, "price": p, "ts": t, "volume": v}
             for s, p, t, v in zip(names, price.tolist(), ts.tolist(), volume.tolist(), strict=True)]
    if keys is not None:
        for item, key in zip(items, keys, strict=True):
            if key is not None:
                item["idempotencyKey"] = key
    return items


class LivePoster:
    """Posts ticks to a server's webhook, each request tried ``retries + 1`` times at most."""

    def __init__(self, url: str, api_key: str, source: str, *, retries: int,
                 on_retry: Callable[[Retry], None]) -> None:
        self.url = url
        self.api_key = api_key
        self.source = source
        self.retries = retries
        self.on_retry = on_retry
        self.totals = LiveTotals()

    async def post(self, client: httpx.AsyncClient, symbols: list[str], sym: np.ndarray, price: np.ndarray,
                   ts: np.ndarray, volume: np.ndarray, keys: pa.Array | None) -> np.ndarray:
        """Post the ticks (numpy columns, ``keys`` the client's or None); return a mask of those in
        requests the server skipped part of: they go to the database."""
        skipped = np.zeros(len(ts), dtype=np.bool_)
        for lo in range(0, len(ts), REQUEST_TICKS):
            part = slice(lo, lo + REQUEST_TICKS)
            texts = keys.slice(lo, REQUEST_TICKS).to_pylist() if keys is not None else None
            items = _items(symbols, sym[part], price[part], ts[part], volume[part], texts)
            receipt = await self._post_one(client, orjson.dumps({"source": self.source, "items": items}))
            self.totals.sent += len(items)
            self.totals.accepted += int(receipt["accepted"])
            self.totals.duplicates += int(receipt["duplicates"])
            if receipt.get("skipped"):
                self.totals.skipped += int(receipt["skipped"])
                skipped[part] = True
        return skipped

    async def _post_one(self, client: httpx.AsyncClient, body: bytes) -> dict:
        delay = 0.2
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                r = await client.post(self.url, content=body,
                                      headers={"x-api-key": self.api_key, "content-type": "application/json"})
            except httpx.TransportError as exc:
                status, retry_after, detail = 0, None, f"{type(exc).__name__}: {exc}".rstrip(": ")
            else:
                if r.status_code == 202:
                    try:
                        receipt = r.json()
                        int(receipt["accepted"]), int(receipt["duplicates"])
                    except (ValueError, TypeError, KeyError) as exc:
                        raise FeedRefused(f"{self.url} answered 202 without a Candlewick receipt ({r.text[:80]!r}); "
                                          "is --url a Candlewick server?", 202) from exc
                    return receipt
                status, retry_after, detail = r.status_code, r.headers.get("retry-after"), r.text[:200]
                if status in (401, 403):
                    raise FeedRefused(f"the server refused the API key ({status}): pass the key it accepts with "
                                      "--api-key or API_KEY", status)
                if status in (404, 405):
                    raise FeedRefused(f"no tick webhook at {self.url} ({status}): give the server's base URL, "
                                      "e.g. http://127.0.0.1:8000", status)
                if status < 500 and status != 429:
                    raise FeedRefused(f"the server rejected a batch ({status}): {detail}", status)
            if attempt == attempts:
                break
            wait = min(float(retry_after), 30.0) if retry_after and retry_after.isdigit() else delay
            self.on_retry(Retry(status, detail, attempt, attempts, wait))
            await trio.sleep(wait)
            delay = min(delay * 2, 5.0)
        if status == 0:
            raise FeedGaveUp(f"no answer from {self.url} after {attempts} attempts ({detail}): is the server running?")
        raise FeedGaveUp(f"the server answered {status} to {attempts} attempts ({detail}): it is down or overloaded")
