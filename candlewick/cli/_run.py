"""``candlewick run`` and ``candlewick migrate``: check the settings, claim what they need, then start.

``run`` binds its port before anything else happens: a taken port is one ``address_in_use`` line
and exit 1, before a key is generated or an engine runs. ``migrate`` reports a database it cannot
use (missing, refused, bad credentials) as one ``migrate_failed`` line and exit 1.
"""

from __future__ import annotations

import argparse
import errno
from functools import partial

import structlog
import trio

from candlewick.config import POSTGRES_URL, Config, setting

log = structlog.get_logger("candlewick")


def run(args: argparse.Namespace) -> int:
    config = Config.from_env(flags={"host": args.host, "port": args.port, "feeder": args.feeder,
                                    "feeder_rate": args.feeder_rate, "role": args.role})
    from candlewick.http import bind_address, listen, serve
    from candlewick.runtime import tune_gc, tune_malloc

    try:
        sockets = listen(config)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            log.error("address_in_use", address=bind_address(config),
                      hint="another process listens there: stop it, or choose another port with --port or PORT")
        else:
            log.error("cannot_listen", address=bind_address(config), error=exc.strerror or str(exc),
                      hint="check --host / HOST: an address of this machine, or 0.0.0.0 for every interface")
        return 1
    tune_gc()
    tune_malloc()
    config, generated = config.with_generated_key()
    if generated:
        log.warning("api_key_generated", api_key=generated,
                    hint="set API_KEYS to choose your own; this key is logged only once")
    trio.run(partial(serve, config, sockets=sockets))
    return 0


def migrate(args: argparse.Namespace) -> int:
    dsn = setting("database_url")
    if not isinstance(dsn, str):
        log.info("migrate_skipped", reason="DATABASE_URL is not set; the embedded store needs no migrations")
        return 0
    from candlewick.aio import open_aio_loop
    from candlewick.errors import StoreUnavailable
    from candlewick.storage.postgres import migrate as apply_migrations

    async def apply() -> list[int] | StoreUnavailable:
        async with open_aio_loop():
            try:
                return await apply_migrations(dsn)
            except StoreUnavailable as exc:  # returned, not raised: the loop's nursery would wrap it in a group
                return exc

    applied = trio.run(apply)
    if isinstance(applied, StoreUnavailable):
        log.error("migrate_failed", database=POSTGRES_URL.show(dsn), error=str(applied),
                  hint="check DATABASE_URL: the server's host and port, the database's name (createdb), the user")
        return 1
    log.info("migrated", applied=applied)
    return 0
