"""One-for-one supervision for symbol actors, with an Erlang-style restart intensity.

See docs/ARCHITECTURE.md, "Restart rules".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import attrs
import structlog
import trio

log = structlog.get_logger("candlewick.supervisor")


@attrs.frozen
class RestartPolicy:
    max_restarts: int = 5
    """Crashes tolerated within ``period``; one more and the child is marked failed."""
    period: float = 60.0


@attrs.define
class ChildState:
    """What the supervision tree shows about one child."""

    name: str
    status: str = "starting"
    """starting | running | failed | stopped"""
    restarts: int = 0
    last_error: str | None = None


async def supervise(state: ChildState, body: Callable[[], Awaitable[None]], policy: RestartPolicy,
                    on_failed: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run ``body`` until it returns, restarting it one-for-one when it raises."""
    crashes: deque[float] = deque()
    while True:
        try:
            await body()
        except Exception as exc:  # noqa: BLE001 - a crash of this child only; Cancelled is a BaseException
            now = trio.current_time()
            crashes.append(now)
            while crashes and crashes[0] < now - policy.period:
                crashes.popleft()
            state.restarts += 1
            state.last_error = f"{type(exc).__name__}: {exc}"
            if len(crashes) > policy.max_restarts:
                state.status = "failed"
                log.error("actor_failed", actor=state.name, restarts=state.restarts,
                          max_restarts=policy.max_restarts, period=policy.period, error=state.last_error,
                          exc_info=exc)
                if on_failed is not None:
                    await on_failed()
                return
            log.warning("actor_restarting", actor=state.name, restarts=state.restarts, error=state.last_error)
            state.status = "starting"
        else:
            state.status = "stopped"
            return
