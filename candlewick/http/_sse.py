"""Server-Sent Events: one subscriber per connection, coalesced writes, keep-alive, replay.

A connection's writer sleeps until its subscriber has something, waits out its coalescing window
and an egress turn, and writes everything waiting as one chunk; keep-alive comments need no turn.
See docs/ARCHITECTURE.md, "Fan-out" (writers, egress).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
import trio

from candlewick.runtime import Broadcaster

HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-transform",
           "X-Accel-Buffering": "no", "Connection": "keep-alive"}


async def stream(hub: Broadcaster, symbols: frozenset[str] | None, last_event_id: int | None,
                 keepalive: float, filter_symbol: str | None, coalesce: float = 0.0) -> AsyncIterator[bytes]:
    sub = hub.subscribe(symbols, last_event_id)
    try:
        hello = {"ok": True, "connectedAt": time.time_ns() // 1_000_000, "filterSymbol": filter_symbol}
        yield b"retry: 3000\ndata: " + orjson.dumps(hello) + b"\n\n"
        sub.last_write = trio.current_time()
        hub.keep_alive_every(sub, keepalive)  # the hub wakes this writer when it is due one
        while True:
            if not sub.pending() and not sub.closed:
                await sub.wait()  # news, a push, close, or a keep-alive wake-up
            if not sub.closed and sub.pending():
                if coalesce > 0:
                    pause = sub.last_write + coalesce - trio.current_time()
                    if pause > 0:
                        await trio.sleep(pause)
                await hub.egress.turn(sub)  # after whatever else the server has to do (ingest first)
            chunk = sub.take()
            if chunk:
                yield chunk
            elif sub.closed:
                return
            elif trio.current_time() - sub.last_write >= 0.75 * keepalive:
                yield b": keep-alive\n\n"
            else:
                continue
            sub.last_write = trio.current_time()
    finally:
        hub.unsubscribe(sub)
