"""The ``candlewick`` command line: its flags, and how each command's outcome becomes an exit code.

Exit codes: 0 done (``feed`` stopped with Ctrl-C included), 1 the command failed (a taken port,
an unreachable database, a server that refused the feed, a trade file ``import`` refused), 2 a
setting or flag that cannot work (one ``bad_configuration`` line naming it), 130 interrupted before
a command could stop cleanly (``import``: interrupted at all; running it again continues).
Every error is one log line, never a traceback.
"""

from __future__ import annotations

import argparse

import structlog

from candlewick import __version__
from candlewick.cli._feed import DEFAULT_SYMBOLS, feed
from candlewick.cli._import import add_parser as add_import_parser
from candlewick.cli._run import migrate, run
from candlewick.config import BadSetting, logging_settings, setting
from candlewick.logs import configure_logging

log = structlog.get_logger("candlewick")


def parser() -> argparse.ArgumentParser:
    """Flags that take a value take it as text: the command checks it (see ``candlewick.config``)."""
    p = argparse.ArgumentParser(prog="candlewick", description="Realtime market-data engine.")
    p.add_argument("--version", action="version", version=f"candlewick {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the engine and its HTTP/SSE server")
    r.add_argument("--host", help="listen address (env HOST, default 127.0.0.1; 0.0.0.0 for every interface)")
    r.add_argument("--port", help="listen port, 1-65535 (env PORT, default 8000)")
    r.add_argument("--feeder", action=argparse.BooleanOptionalAction, default=None,
                   help="run the built-in synthetic feeder (env FEEDER; default: on unless DATABASE_URL is set)")
    r.add_argument("--feeder-rate", help="built-in feeder ticks per second, above 0 (env FEEDER_RATE, default 20)")
    r.add_argument("--role", help="what this process does: all, ingest, worker or gateway (env ROLE, default all); "
                                  "the others need REDIS_URL and DATABASE_URL, see the README's scaling section")
    r.set_defaults(handler=run)
    f = sub.add_parser("feed", help="post synthetic ticks to a running Candlewick over HTTP",
                       description="Post synthetic ticks to a running Candlewick, showing progress; Ctrl-C stops "
                                   "it with a summary (exit 0). Exit 1 when the server refuses the feed or "
                                   "cannot be reached after the retries, 2 for a bad flag.")
    f.add_argument("--url", help="the server's base URL, or the full webhook URL "
                                 "(default http://127.0.0.1:8000, posting to /api/v1/webhooks/ticks)")
    f.add_argument("--api-key", help="x-api-key to send (env API_KEY, else the first of API_KEYS)")
    f.add_argument("--rate", help="ticks per second, above 0 (default 50)")
    f.add_argument("--batch", help="ticks per request, 1 or more (default: a tenth of the rate)")
    f.add_argument("--symbols", help=f"comma-separated symbols to trade (default {DEFAULT_SYMBOLS})")
    f.add_argument("--total", help="stop after this many ticks (default: run until Ctrl-C)")
    f.add_argument("--retries", help="attempts again per batch when the server does not answer or answers "
                                     "429/5xx, before giving up with exit 1 (default 8, about 20 s)")
    f.add_argument("--progress-every", help="seconds between progress lines when stderr is not a terminal "
                                            "(default 10; a terminal shows one line, redrawn in place)")
    f.set_defaults(handler=feed)
    m = sub.add_parser("migrate", help="apply database migrations (DATABASE_URL)")
    m.set_defaults(handler=migrate)
    add_import_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging(*logging_settings())
    try:
        setting("log_pretty")  # every command checks the logging settings it has just used leniently
        setting("log_level")
        return args.handler(args)
    except BadSetting as exc:
        log.error("bad_configuration", setting=exc.setting, value=exc.value, accepted=exc.accepted)
        return 2
    except KeyboardInterrupt:  # before a command's own signal handling began: nothing to clean up
        log.warning("interrupted")
        return 130
