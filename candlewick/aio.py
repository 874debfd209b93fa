"""The one asyncio zone: trio-asyncio's loop, opened at the root, for asyncpg and redis-py.

asyncio libraries report stray problems through the loop's exception handler (asyncpg after a
killed connection: "Resetting connection with an active transaction", "Future exception was
never retrieved"). trio-asyncio's default handler raises those inside its nursery, which would
take the whole process down; here they are logged, and the operation that actually failed
raises in its caller as usual.
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
