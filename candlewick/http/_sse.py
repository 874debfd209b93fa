"""Server-Sent Events: one subscriber per connection, coalesced writes, keep-alive, replay."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
import trio

from candlewick.actors import Broadcaster

HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-transform",
           "X-Accel-Buffering": "no", "Connection": "keep-alive"}


async def stream(hub: Broadcaster, symbols: frozenset[str] | None, last_event_id: int | None,
                 keepalive: float, filter_symbol: str | None) -> AsyncIterator[bytes]:
    sub = hub.subscribe(symbols, last_event_id)
    try:
        hello = {"ok": True, "connectedAt": time.time_ns() // 1_000_000, "filterSymbol": filter_symbol}
        yield b"retry: 3000\ndata: " + orjson.dumps(hello) + b"\n\n"
        while True:
            if not sub.queue and sub.resync is None and not sub.closed:
                with trio.move_on_after(keepalive):
                    await sub.wait()
            chunk = sub.take()
            if chunk:
                yield chunk
            elif sub.closed:
                return
            else:
                yield b": keep-alive\n\n"
    finally:
        hub.unsubscribe(sub)
