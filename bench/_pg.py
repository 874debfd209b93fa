"""Postgres for the benchmark harness: SQL on a DSN, whether the server is there, and throwaway databases."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from bench._results import log

ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "postgresql://127.0.0.1:5432/postgres")


def dsn_for(admin_dsn: str, db: str) -> str:
    """The admin DSN with its database replaced by ``db``."""
    u = urlsplit(admin_dsn)
    return urlunsplit((u.scheme, u.netloc, "/" + db, u.query, u.fragment))


def sql(dsn: str, *statements: str, fetch: bool = False, timeout: float = 60.0):
    """Run the statements on one connection (plain asyncio); the last one's status, or with
    ``fetch`` its first value."""
    import asyncpg

    async def run():
        con = await asyncpg.connect(dsn, timeout=timeout)
        try:
            out = None
            for s in statements:
                out = await (con.fetchval(s) if fetch else con.execute(s))
            return out
        finally:
            await con.close()

    return asyncio.run(run())


def postgres_available(admin_dsn: str = ADMIN_DSN) -> str | None:
    """None if we can create databases there, else why not."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg is not installed"
    try:
        sql(admin_dsn, "SELECT 1", timeout=3.0)
    except Exception as exc:  # noqa: BLE001 - any failure means: skip
        return f"{admin_dsn}: {type(exc).__name__}: {exc}"
    return None


@contextlib.contextmanager
def temp_database(admin_dsn: str = ADMIN_DSN, prefix: str = "cw_bench") -> Iterator[str]:
    """A fresh database ``<prefix>_<hex>`` on the admin DSN's server, yielded as its DSN; dropped
    afterwards (WITH FORCE)."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    sql(admin_dsn, f"CREATE DATABASE {name}", timeout=10.0)
    try:
        yield dsn_for(admin_dsn, name)
    finally:
        try:
            sql(admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", timeout=10.0)
        except Exception as exc:  # noqa: BLE001
            log(f"could not drop database {name}: {exc}")
