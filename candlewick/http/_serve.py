"""Run the engine and the HTTP server in one trio program, and stop both gracefully.

See docs/ARCHITECTURE.md, "The task tree" (start and stop).
"""

from __future__ import annotations

import logging
import signal

import attrs
import structlog
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve as hypercorn_serve

from candlewick.config import Config
from candlewick.engine import Engine
from candlewick.http._app import create_app
from candlewick.storage import Store

log = structlog.get_logger("candlewick.server")


@attrs.frozen
class Running:
    """What ``serve`` hands back once it listens."""

    engine: Engine
    binds: list[str]
    shutdown: trio.Event

    def stop(self) -> None:
        self.shutdown.set()


def hypercorn_config(config: Config) -> HyperConfig:
    hc = HyperConfig()
    hc.bind = [f"{config.host}:{config.port}"]
    hc.read_timeout = config.read_timeout
    hc.graceful_timeout = config.graceful_timeout
    # Idle keep-alive connections also bound how long a graceful stop waits. Hypercorn's idle timer
    # runs from the accept (or the last response) until a request's headers are complete, so it is
    # also the deadline for a slowloris; and it, not read_timeout, is what closes a connection that
    # has sent no complete request: keep it within read_timeout, as READ_TIMEOUT promises.
    hc.keep_alive_timeout = min(5, config.read_timeout)
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")  # through structlog's renderer
    hc.include_server_header = False
    return hc


async def _on_signals(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("shutdown_requested", signal=signal.Signals(signum).name)
            shutdown.set()


async def serve(config: Config, store: Store | None = None, *, handle_signals: bool = True,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run engine + server; with Postgres or Redis configured, inside one trio-asyncio loop."""
    if config.database_url or config.redis_url:
        from candlewick.aio import open_aio_loop

        async with open_aio_loop():
            await _serve(config, store, handle_signals, task_status)
    else:
        await _serve(config, store, handle_signals, task_status)


async def _serve(config: Config, store: Store | None, handle_signals: bool, task_status) -> None:
    engine = Engine(config, store)
    app = create_app(engine)
    shutdown = trio.Event()

    async def trigger() -> None:
        await shutdown.wait()
        engine.hub.close_all()  # SSE streams end now, so the server's drain is not held up

    server_done = trio.Event()

    async def run_server(task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            await hypercorn_serve(app, hypercorn_config(config), shutdown_trigger=trigger, task_status=task_status)
        finally:
            server_done.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        if handle_signals:
            nursery.start_soon(_on_signals, shutdown)
        binds = await nursery.start(run_server)
        log.info("listening", binds=binds, store=engine.store.name)
        task_status.started(Running(engine, binds, shutdown))
        # The engine keeps running until the server has finished its in-flight requests,
        # so their ticks are still committed; hypercorn bounds that by its graceful_timeout.
        await shutdown.wait()
        await server_done.wait()
        engine.stop()
        with trio.move_on_after(config.graceful_timeout) as scope:
            await engine.wait_stopped()
        if scope.cancelled_caught:
            log.error("drain_timeout", timeout=config.graceful_timeout)
        nursery.cancel_scope.cancel()
