"""Run the engine and the HTTP server in one trio program, and stop both gracefully.

``listen`` binds the listening socket before anything starts, so a taken port stops ``candlewick
run`` before it logs a key or runs an engine; ``serve`` then serves on that socket. See
docs/ARCHITECTURE.md, "The task tree" (start and stop).
"""

from __future__ import annotations

import logging
import signal
import socket

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


def bind_address(config: Config) -> str:
    """``host:port`` as a client would write it (``[::1]:8000`` for an IPv6 host)."""
    return f"[{config.host}]:{config.port}" if ":" in config.host else f"{config.host}:{config.port}"


def hypercorn_config(config: Config, sockets: list[socket.socket] | None = None) -> HyperConfig:
    """Hypercorn's settings; with ``sockets`` (from ``listen``), it serves on them and owns them."""
    hc = HyperConfig()
    hc.bind = [f"fd://{sock.detach()}" for sock in sockets] if sockets else [bind_address(config)]
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


def listen(config: Config) -> list[socket.socket]:
    """Bind and listen on the configured address now, as hypercorn would; hand the sockets to ``serve``.

    Raises ``OSError`` when the address cannot be had (``errno.EADDRINUSE``: the port is taken).
    Connections that arrive before ``serve`` runs wait in the listen backlog.
    """
    hc = hypercorn_config(config)
    sockets = hc.create_sockets().insecure_sockets
    for sock in sockets:
        sock.listen(hc.backlog)
    return sockets


async def _on_signals(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("shutdown_requested", signal=signal.Signals(signum).name)
            shutdown.set()


async def serve(config: Config, store: Store | None = None, *, sockets: list[socket.socket] | None = None,
                handle_signals: bool = True, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run engine + server (on ``sockets`` from ``listen``, else binding the configured address once the
    engine runs); with Postgres or Redis configured, inside one trio-asyncio loop."""
    if config.database_url or config.redis_url:
        from candlewick.aio import open_aio_loop

        async with open_aio_loop():
            await _serve(config, store, sockets, handle_signals, task_status)
    else:
        await _serve(config, store, sockets, handle_signals, task_status)


async def _serve(config: Config, store: Store | None, sockets: list[socket.socket] | None, handle_signals: bool,
                 task_status) -> None:
    engine = Engine(config, store)
    app = create_app(engine)
    shutdown = trio.Event()

    async def trigger() -> None:
        await shutdown.wait()
        engine.hub.close_all()  # SSE streams end now, so the server's drain is not held up

    server_done = trio.Event()

    async def run_server(task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            await hypercorn_serve(app, hypercorn_config(config, sockets), shutdown_trigger=trigger,
                                  task_status=task_status)
        finally:
            server_done.set()

    async with trio.open_nursery() as nursery:
        if handle_signals:  # from the start: a stop asked for while the engine starts waits for it
            nursery.start_soon(_on_signals, shutdown)
        await nursery.start(engine.run)
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
