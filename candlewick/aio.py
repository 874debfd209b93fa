"""The one asyncio zone: trio-asyncio's loop, opened at the root, for asyncpg and redis-py.

Its exception handler logs asyncio's stray reports rather than raising them; see
docs/ARCHITECTURE.md, "Layers" (the asyncio zone).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog

log = structlog.get_logger("candlewick.asyncio")


def _log_report(loop, context: dict) -> None:
    exc = context.get("exception")
    log.warning("asyncio_report", message=context.get("message"),
                error=f"{type(exc).__name__}: {exc}" if exc is not None else None)


@asynccontextmanager
async def open_aio_loop() -> AsyncIterator[object]:
    import trio_asyncio  # only here: importing it changes asyncio for the whole process

    async with trio_asyncio.open_loop() as loop:
        loop.set_exception_handler(_log_report)
        yield loop
