"""Shared fixtures: an in-process engine, a real server on a loopback port, a subprocess server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from candlewick.config import Config
from candlewick.engine import Engine
from candlewick.logs import configure_logging

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "test-key-0123456789"

configure_logging(pretty=False)


def make_config(**overrides) -> Config:
    base = {"feeder": False, "api_keys": (API_KEY,), "port": 0, "host": "127.0.0.1"}
    base.update(overrides)
    return Config(**base)


@pytest.fixture
async def engine(nursery):
    """A running engine with the memory store and no feeder."""
    eng = await nursery.start(Engine(make_config()).run)
    yield eng
    eng.stop()
    await eng.wait_stopped()


@attrs.define
class LiveServer:
    base_url: str
    engine: Engine
    running: object
    client: httpx.AsyncClient

    def url(self, path: str) -> str:
        return self.base_url + path

    async def post_ticks(self, items, *, key: str = API_KEY, source: str = "test") -> httpx.Response:
        return await self.client.post(self.url("/api/v1/webhooks/ticks"), json={"source": source, "items": items},
                                      headers={"x-api-key": key})


async def start_live_server(nursery, **overrides) -> LiveServer:
    from candlewick.http import serve

    running = await nursery.start(lambda task_status: serve(make_config(**overrides), handle_signals=False,
                                                           task_status=task_status))
    base = running.binds[0]
    client = httpx.AsyncClient(timeout=10.0)
    return LiveServer(base, running.engine, running, client)


@pytest.fixture
async def server(nursery):
    """The real HTTP server (hypercorn + quart-trio) on a loopback port, in this process."""
    live = await start_live_server(nursery)
    yield live
    await live.client.aclose()
    live.running.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@attrs.define
class ServerProcess:
    proc: subprocess.Popen
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def server_process(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
                   timeout: float = 20.0) -> Iterator[ServerProcess]:
    """``python -m candlewick run`` as a child process; waits for liveness; always cleans up."""
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    full_env = {**os.environ, "API_KEYS": API_KEY, **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "candlewick", "run", "--host", "127.0.0.1",
                                 "--port", str(port), *args], env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=ROOT)
    sp = ServerProcess(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{sp.log()}")
            try:
                if httpx.get(sp.base_url + "/health/liveness", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not come up in {timeout}s:\n{sp.log()}")
            time.sleep(0.05)  # polling a child process for readiness, with a deadline
        yield sp
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def wait_until(predicate, timeout: float = 5.0, interval: float = 0.01) -> None:
    """Poll a condition with a deadline (for things observed from outside, like HTTP)."""
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(interval)


# -- PostgreSQL: the real server on 127.0.0.1:5432; each test gets its own database -----------------
PG_ADMIN = os.environ.get("CANDLEWICK_TEST_PG", "postgresql://127.0.0.1:5432/postgres")


def _pg_admin(sql: str) -> None:
    import asyncio
    import concurrent.futures

    import asyncpg

    async def run() -> None:
        con = await asyncpg.connect(PG_ADMIN, timeout=10)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    # On its own thread: the main thread may hold another library's running loop (playwright's).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def pg_database_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def pg_url():
    """A fresh, empty database on the real Postgres server, dropped afterwards."""
    import uuid

    name = f"cw_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(f"CREATE DATABASE {name}")
    try:
        yield pg_database_url(name)
    finally:
        _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def aio():
    """The trio-asyncio loop that asyncpg and redis run on (one zone, as in production)."""
    from candlewick.aio import open_aio_loop

    async with open_aio_loop() as loop:
        yield loop


# -- Redis: the real server on 127.0.0.1:6379; each test gets its own key prefix ---------------------
REDIS_URL = os.environ.get("CANDLEWICK_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _redis_cleanup(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i:i + 1000])
    finally:
        client.close()


@pytest.fixture
def redis_prefix():
    """A key prefix of this test's own on the real Redis server, deleted afterwards."""
    import uuid

    prefix = f"cwt{uuid.uuid4().hex[:10]}:"
    try:
        yield prefix
    finally:
        _redis_cleanup(prefix)


def stored_key(key: str) -> bytes:
    """What ``ticks_raw.idempotency_key`` holds for a client's key: its 16-byte digest (XXH3-128)."""
    from candlewick.schema import digest_key
    return digest_key(key.encode())
