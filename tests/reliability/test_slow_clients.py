"""Item 4: idle, half-open and slowloris connections neither slow fresh requests nor stay open.

The server runs as a child process with a short ``READ_TIMEOUT``. The test holds 500 idle
connections (half connect and send nothing, half send a partial request line) and 50 slowloris
senders that dribble request headers a byte at a time (each reconnecting when it is cut off,
as a real attacker would), then times fresh requests on new connections while all of them are
open (the server's open file descriptors are counted to show the load was really there). Then
it watches each connection end:

- an idle or half-open connection is closed by the read timeout: not before ``READ_TIMEOUT``
  seconds of silence, and not long after;
- a slowloris sender, which is never silent for that long, is cut off by the deadline for
  complete request headers: hypercorn's idle timer (``keep_alive_timeout``, set in
  ``candlewick/http/_serve.py`` to ``min(5 s, READ_TIMEOUT)``) runs from the accept until a
  request's headers are complete, and dribbling does not reset it.

(Found here: that idle timer, not ``read_timeout``, is what closes a connection that has sent no
complete request, and it was a fixed 5 s, so with ``READ_TIMEOUT=3`` such connections lived 5 s.)

The soft limit on open files is raised for the test process (and so for the server it starts)
when it is below what 550 held connections need on both ends.
"""

from __future__ import annotations

import math
import os
import resource
import time
from contextlib import contextmanager

import trio

from tests.conftest import server_process

KEEP_ALIVE = 5.0  # hypercorn's keep_alive_timeout in candlewick/http/_serve.py, at most READ_TIMEOUT
IDLE = 500
SLOWLORIS = 50


@contextmanager
def open_files_at_least(n: int):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        yield soft
        return
    if hard != resource.RLIM_INFINITY and hard < n:
        raise RuntimeError(f"the hard limit on open files ({hard}) is below the {n} this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    try:
        yield n
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _wait_closed(stream: trio.SocketStream) -> None:
    """Until the server ends the connection (FIN or RST); any bytes it sends first are read and dropped."""
    try:
        while await stream.receive_some(65536):
            pass
    except trio.BrokenResourceError:
        pass


async def fresh_request(port: int) -> float:
    t0 = time.perf_counter()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /health/liveness HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    elapsed = time.perf_counter() - t0
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b'{"ok":true}'), data[:200]
    return elapsed


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_idle_and_slowloris_connections(tmp_path, size, figure):
    """500 idle + 50 slowloris: fresh requests answer within 100 ms p99; the timeouts close every one."""
    read_timeout = 3.0
    header_deadline = min(KEEP_ALIVE, read_timeout)
    fresh_n = size.pick(quick=200, full=1000)
    idle_closed: list[float] = []  # seconds from the connect (the server's clock starts at its accept) to the close
    loris_closed: list[float] = []  # seconds from the connect to the close
    loris_bytes: list[int] = []
    stop = trio.Event()  # until set, every client reconnects when cut off, so the load is held throughout

    async def idle(port: int, partial: bool) -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                if partial:
                    await stream.send_all(b"GET /api/v1/health/liven")
                await _wait_closed(stream)
                idle_closed.append(time.monotonic() - t0)

    async def slowloris(port: int) -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            sent = 0
            async with stream, trio.open_nursery() as nursery:
                async def dribble(stream: trio.SocketStream) -> None:
                    nonlocal sent
                    header = b"GET /health/liveness HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100_000
                    for byte in header:
                        try:
                            await stream.send_all(bytes([byte]))
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            return
                        sent += 1
                        await trio.sleep(0.1)  # the attacker's pace: never silent for READ_TIMEOUT

                nursery.start_soon(dribble, stream)
                await _wait_closed(stream)
                loris_closed.append(time.monotonic() - t0)
                loris_bytes.append(sent)
                nursery.cancel_scope.cancel()

    need = 2 * (IDLE + SLOWLORIS) + 512
    with open_files_at_least(need), server_process(tmp_path, "--no-feeder",
                                                   env={"READ_TIMEOUT": str(read_timeout)}) as sp:
        port = int(sp.base_url.rsplit(":", 1)[1])
        baseline_fds = open_fds(sp.proc.pid)
        held: list[int] = []
        async with trio.open_nursery() as nursery:
            clients = [lambda i=i: idle(port, i % 2 == 1) for i in range(IDLE)] + \
                      [lambda: slowloris(port)] * SLOWLORIS
            for i in range(0, len(clients), 50):  # in batches, within the listen backlog
                for client in clients[i:i + 50]:
                    nursery.start_soon(client)
                with trio.fail_after(10):
                    while open_fds(sp.proc.pid) - baseline_fds < i + 45:
                        await trio.sleep(0.005)  # polling the server's fd table, under a deadline
            latencies = []
            for n in range(fresh_n):
                latencies.append(await fresh_request(port))
                if n % 10 == 0:
                    held.append(open_fds(sp.proc.pid) - baseline_fds)
            stop.set()  # each client ends when its current connection is closed by the server
            with trio.fail_after(read_timeout + header_deadline + 15):
                while open_fds(sp.proc.pid) - baseline_fds > 5:
                    await trio.sleep(0.05)
        after_fds = open_fds(sp.proc.pid) - baseline_fds
        healthy = await fresh_request(port)

    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[math.ceil(0.99 * len(latencies)) - 1]
    held.sort()
    held_median = held[len(held) // 2]
    figure(f"{IDLE} idle/half-open + {SLOWLORIS} slowloris held (median {held_median} server fds): fresh requests "
           f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms (n={fresh_n}); "
           f"{len(idle_closed)} idle connections closed after {min(idle_closed):.2f}-{max(idle_closed):.2f} s "
           f"(READ_TIMEOUT {read_timeout:g} s); {len(loris_closed)} slowloris connections cut off after "
           f"{min(loris_closed):.2f}-{max(loris_closed):.2f} s (<= {max(loris_bytes)} header bytes each)",
           value=round(p99 * 1000, 2), p50_ms=round(p50 * 1000, 2), p99_ms=round(p99 * 1000, 2),
           max_ms=round(latencies[-1] * 1000, 2), fresh=fresh_n, server_fds_held_median=held_median,
           idle_close_s=[round(min(idle_closed), 2), round(max(idle_closed), 2)],
           slowloris_close_s=[round(min(loris_closed), 2), round(max(loris_closed), 2)],
           idle_connections=len(idle_closed), slowloris_connections=len(loris_closed), read_timeout_s=read_timeout)

    # the load was really there while the fresh requests were timed
    assert held_median >= 0.9 * (IDLE + SLOWLORIS), f"the server held only {held} extra fds"
    assert p99 < 0.100, f"fresh request p99 {p99 * 1000:.1f} ms"
    # closed by the read timeout: not before it, and not long after
    assert len(idle_closed) >= IDLE
    assert min(idle_closed) >= read_timeout - 0.05, sorted(idle_closed)[:5]
    assert max(idle_closed) <= read_timeout + 1.5, sorted(idle_closed)[-5:]
    # slowloris: cut off by the header deadline although never silent for READ_TIMEOUT
    assert len(loris_closed) >= SLOWLORIS
    assert min(loris_closed) >= header_deadline - 0.05 and max(loris_closed) <= header_deadline + 1.5, \
        (min(loris_closed), max(loris_closed))
    assert max(loris_bytes) < 100, "a slowloris never completed its headers"
    assert after_fds <= 5, f"{after_fds} connections were left open"
    assert healthy < 1.0
