"""The ``candlewick`` command line: run, feed, migrate."""

from __future__ import annotations

import argparse
import os
import sys

import structlog
import trio

from candlewick.config import Config, _bool
from candlewick.logs import configure_logging

log = structlog.get_logger("candlewick")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="candlewick", description="Realtime market-data engine.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the engine and its HTTP/SSE server")
    run.add_argument("--host", default=None, help="listen address (env HOST, default 127.0.0.1)")
    run.add_argument("--port", type=int, default=None, help="listen port (env PORT, default 8000)")
    run.add_argument("--feeder", action=argparse.BooleanOptionalAction, default=None,
                     help="run the built-in synthetic feeder (default: on unless DATABASE_URL is set)")
    run.add_argument("--feeder-rate", type=float, default=None, help="built-in feeder ticks per second")
    run.add_argument("--role", choices=("all", "ingest", "worker", "gateway"), default=None,
                     help="what this process does (env ROLE, default all); the others need REDIS_URL and "
                          "DATABASE_URL, see the README's scaling section")
    feed = sub.add_parser("feed", help="post synthetic ticks to a running Candlewick over HTTP")
    feed.add_argument("--url", default="http://127.0.0.1:8000/api/v1/webhooks/ticks")
    feed.add_argument("--api-key", default=None, help="x-api-key (env API_KEY, else the first of API_KEYS)")
    feed.add_argument("--rate", type=float, default=50.0, help="ticks per second")
    feed.add_argument("--batch", type=int, default=None, help="ticks per request (default: rate/10)")
    feed.add_argument("--symbols", default="BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT")
    feed.add_argument("--total", type=int, default=None, help="stop after this many ticks")
    sub.add_parser("migrate", help="apply database migrations (DATABASE_URL)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = Config.from_env(host=getattr(args, "host", None), port=getattr(args, "port", None),
                                 feeder=getattr(args, "feeder", None), feeder_rate=getattr(args, "feeder_rate", None),
                                 role=getattr(args, "role", None))
    except ValueError as exc:
        configure_logging(pretty=_bool(os.environ.get("LOG_PRETTY"), False))
        log.error("bad_configuration", error=str(exc))
        return 2
    configure_logging(pretty=config.log_pretty)
    if args.command == "run":
        from candlewick.http import serve
        from candlewick.runtime import tune_gc, tune_malloc

        tune_gc()
        tune_malloc()
        config, generated = config.with_generated_key()
        if generated:
            log.warning("api_key_generated", api_key=generated,
                        hint="set API_KEYS to choose your own; this key is logged only once")
        trio.run(serve, config)
        return 0
    if args.command == "feed":
        from candlewick.runtime import run_http

        key = args.api_key or os.environ.get("API_KEY") or (config.api_keys[0] if config.api_keys else None)
        if not key:
            log.error("feed_needs_key", hint="pass --api-key or set API_KEY")
            return 2
        symbols = [s for s in args.symbols.split(",") if s]
        totals = trio.run(lambda: run_http(args.url, key, symbols=symbols, rate=args.rate, batch=args.batch,
                                           total=args.total))
        log.info("feed_done", **totals)
        return 0
    if args.command == "migrate":
        if not config.database_url:
            log.info("migrate_skipped", reason="DATABASE_URL is not set; the embedded store needs no migrations")
            return 0
        from candlewick.aio import open_aio_loop
        from candlewick.storage.postgres import migrate

        async def run() -> list[int]:
            async with open_aio_loop():
                return await migrate(config.database_url)

        applied = trio.run(run)
        log.info("migrated", applied=applied)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
