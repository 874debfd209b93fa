"""Shared pieces of the benchmark harness.

- results: machine facts, median/min/max summaries, latency percentiles, the JSON result file
  (``bench/results/<scenario>-<timestamp>.json``, or ``$BENCH_RESULTS_DIR``) and table printing;
- ``Server``: ``python -m candlewick run --no-feeder`` as a child process on a free loopback port,
  always stopped (SIGTERM, then SIGKILL) by its context manager;
- ``temp_database``: a fresh Postgres database, always dropped;
- ``Worker``: a load process (``python -m bench._common KIND JSON``) that prints one JSON line;
- the workers themselves, plain asyncio over raw HTTP/1.1 keep-alive sockets (no trio, no
  trio-asyncio, so the client side stays cheap and separate from the server's CPU):
  ``gen`` posts batches of ticks with unique idempotency keys (as fast as it can, or paced at a
  rate), ``read`` times GETs, ``sse`` holds many SSE subscriptions and times tick-to-client delay.

Nothing here imports ``candlewick``: the server is always a separate process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).resolve().parent / "results")
ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "postgresql://127.0.0.1:5432/postgres")
API_KEY = "bench-key"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PACKAGES = ("trio", "hypercorn", "quart-trio", "quart", "asyncpg", "orjson", "trio-asyncio", "httpx", "matplotlib")


def handle_termination() -> None:
    """SIGTERM and SIGINT raise KeyboardInterrupt in this process, so ``finally`` blocks stop the
    child servers and drop the databases. (Also undoes a SIGINT left ignored by a parent shell,
    which children would otherwise inherit.)"""
    def interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def log(msg: str) -> None:
    """Progress goes to stderr; stdout carries the table rows and the ``results:`` line."""
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------
def machine_facts() -> dict:
    from importlib import metadata

    facts: dict = {"cores": os.cpu_count(), "python": sys.version.split()[0],
                   "implementation": platform.python_implementation(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            facts["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
        with open("/proc/meminfo") as f:
            facts["mem_total"] = f.readline().split(":", 1)[1].strip()
        facts["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    facts["packages"] = versions
    try:  # which code was measured: the tree is edited while benchmarks run
        git = ["git", "-C", str(ROOT)]
        facts["git_head"] = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                           timeout=10).stdout.strip()
        facts["git_dirty"] = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                                            capture_output=True, text=True, timeout=10).stdout.split("\n")[:-1]
    except (OSError, subprocess.SubprocessError):
        pass
    return facts


def summary(values: list[float]) -> dict:
    """Median, min and max of the runs (and the runs themselves)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": list(values)}


def pcts(seconds: list[float]) -> dict:
    """Latency percentiles in milliseconds (nearest-rank)."""
    if not seconds:
        return {"n": 0}
    s = sorted(seconds)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(p * len(s)))] * 1e3

    return {"n": len(s), "p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99), "max_ms": s[-1] * 1e3,
            "mean_ms": statistics.fmean(s) * 1e3}


def fmt_summary(s: dict | None, spec: str = ",.0f", suffix: str = "") -> str:
    if not s or s.get("median") is None:
        return "-"
    med, lo, hi = s["median"], s["min"], s["max"]
    if len(s.get("runs", [])) <= 1:
        return f"{med:{spec}}{suffix}"
    return f"{med:{spec}}{suffix} ({lo:{spec}}-{hi:{spec}})"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    for r in [headers, *rows]:
        cells = zip(r, widths, strict=True)
        print("  ".join(f"{str(c):<{w}}" if i == 0 else f"{str(c):>{w}}" for i, (c, w) in enumerate(cells)))
    sys.stdout.flush()


def write_result(scenario: str, data: dict, *, quick: bool, started: float | None = None) -> Path:
    """Write ``<scenario>-<timestamp>[-quick].json`` with the machine facts; print ``results: <path>``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{scenario}-{stamp}{'-quick' if quick else ''}.json"
    n = 1
    while path.exists():  # two scenarios finishing within a second
        n += 1
        path = RESULTS / f"{scenario}-{stamp}-{n}{'-quick' if quick else ''}.json"
    payload = {"scenario": scenario, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": quick,
               "wall_seconds": (time.perf_counter() - started) if started is not None else None,
               "machine": machine_facts(), **data}
    path.write_text(json.dumps(payload, indent=2, default=str))
    try:
        shown = path.relative_to(ROOT)
    except ValueError:
        shown = path
    print(f"results: {shown}", flush=True)
    return path


# ----------------------------------------------------------------------------------------------
# CPU accounting (/proc)
# ----------------------------------------------------------------------------------------------
def pid_cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            tail = f.read().rsplit(")", 1)[1].split()
        return (int(tail[11]) + int(tail[12])) / CLK_TCK  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def pid_rss_bytes(pid: int | str = "self") -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def machine_busy_seconds() -> float:
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:9]]
    return (sum(vals) - vals[3] - vals[4]) / CLK_TCK


class CpuMeter:
    """Cores used over a window by the whole machine and by given pids."""

    def __init__(self, **pids: int) -> None:
        self.pids = pids

    def __enter__(self) -> CpuMeter:
        self.t0 = time.perf_counter()
        self.m0 = machine_busy_seconds()
        self.p0 = {k: pid_cpu_seconds(p) for k, p in self.pids.items()}
        self.result: dict = {}
        return self

    def __exit__(self, *exc) -> None:
        dt = max(1e-9, time.perf_counter() - self.t0)
        self.result = {"machine_busy_cores": round((machine_busy_seconds() - self.m0) / dt, 3)}
        for k, p in self.pids.items():
            now, before = pid_cpu_seconds(p), self.p0.get(k)
            if now is not None and before is not None:
                self.result[f"{k}_cores"] = round((now - before) / dt, 3)


# ----------------------------------------------------------------------------------------------
# the server under test, as a child process
# ----------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_post_json(url: str, body: dict, timeout: float = 30.0) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", "x-api-key": API_KEY})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class Server:
    """``python -m candlewick run --no-feeder`` on 127.0.0.1:<free port>. Use as a context manager."""

    def __init__(self, *, database_url: str | None = None, env: dict[str, str] | None = None,
                 ready_timeout: float = 60.0) -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self.base = f"http://{self.host}:{self.port}"
        self.database_url = database_url
        self.extra_env = env or {}
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self.log_path: str | None = None

    def __enter__(self) -> Server:
        fd, self.log_path = tempfile.mkstemp(prefix="cw-bench-server-", suffix=".log")
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PORT", "HOST")}
        env.update({"API_KEYS": API_KEY, "FEEDER": "0", **self.extra_env})
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        with os.fdopen(fd, "wb") as logf:
            self.proc = subprocess.Popen([sys.executable, "-m", "candlewick", "run", "--no-feeder", "--host",
                                          self.host, "--port", str(self.port)], cwd=ROOT, env=env, stdout=logf,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode} at start:\n{self.log_tail()}")
            try:
                if http_get(self.base + "/health/readiness", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {self.ready_timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return Path(self.log_path or "").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                log(f"server pid {proc.pid} ignored SIGTERM for 20 s; killing it")
                proc.kill()
                proc.wait()
        elif proc.returncode not in (0, -signal.SIGTERM):
            log(f"server exited {proc.returncode}; log {self.log_path}:\n{self.log_tail(1500)}")
        if self.log_path and proc.returncode in (0, -signal.SIGTERM) and not os.environ.get("BENCH_KEEP_LOGS"):
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)

    # -- what the API reports -------------------------------------------------------------------
    def get_json(self, path: str):
        status, body = http_get(self.base + path)
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}: {body[:300]!r}")
        return json.loads(body)

    def post_ticks(self, items: list[dict]) -> dict:
        status, body = http_post_json(self.base + "/api/v1/webhooks/ticks", {"source": "bench", "items": items})
        if status != 202:
            raise RuntimeError(f"POST ticks -> {status}: {body}")
        return body

    def counts(self, symbols: list[str]) -> dict:
        """Applied ticks as the API reports them: committed by the flushers
        (``/ops/health/supervisor`` ticksWritten), accepted (Prometheus ``candlewick_ticks``),
        and the sum of the 1-minute candles' ``count`` over the given symbols (the store's view)."""
        tree = self.get_json("/ops/health/supervisor")
        written = sum(c.get("ticksWritten", 0) for c in tree["children"] if c["name"].split(":")[0] == "flusher")
        status, prom = http_get(self.base + "/ops/metrics")
        accepted = None
        for line in prom.decode().splitlines():
            if line.startswith("candlewick_ticks_total{") and 'outcome="accepted"' in line:
                accepted = int(float(line.rsplit(" ", 1)[1]))
        candles = 0
        for sym in symbols:
            status, body = http_get(f"{self.base}/api/v1/ticks/{sym}/history?view=ohlc1m&limit=2000")
            if status == 200:
                candles += sum(item["count"] for item in json.loads(body)["items"])
        return {"ticks_written": written, "accepted_metric": accepted, "candle_count": candles}


# ----------------------------------------------------------------------------------------------
# Postgres
# ----------------------------------------------------------------------------------------------
def _admin_sql(admin_dsn: str, sql: str, timeout: float = 10.0):
    import asyncpg

    async def run():
        con = await asyncpg.connect(admin_dsn, timeout=timeout)
        try:
            return await con.execute(sql)
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
        _admin_sql(admin_dsn, "SELECT 1", timeout=3.0)
    except Exception as exc:  # noqa: BLE001 - any failure means: skip
        return f"{admin_dsn}: {type(exc).__name__}: {exc}"
    return None


@contextlib.contextmanager
def temp_database(admin_dsn: str = ADMIN_DSN, prefix: str = "cw_bench") -> Iterator[str]:
    """A fresh database on the admin DSN's server; dropped afterwards (WITH FORCE)."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    _admin_sql(admin_dsn, f"CREATE DATABASE {name}")
    u = urlsplit(admin_dsn)
    try:
        yield urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))
    finally:
        try:
            _admin_sql(admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except Exception as exc:  # noqa: BLE001
            log(f"could not drop database {name}: {exc}")


# ----------------------------------------------------------------------------------------------
# worker processes
# ----------------------------------------------------------------------------------------------
class Worker:
    """``python -m bench._common KIND JSON`` in its own process. Prints ``READY`` (optional), then
    one JSON line last. Always killed by ``close`` (the context manager)."""

    def __init__(self, kind: str, params: dict, module: str | None = None) -> None:
        self.kind = kind
        self.err = tempfile.TemporaryFile()
        argv = ["-m", module, "_worker"] if module else ["-m", "bench._common", kind]
        self.proc = subprocess.Popen([sys.executable, *argv, json.dumps(params)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err)
        self._lines: list[bytes] = []
        self._buf = b""

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _readline(self, timeout: float) -> bytes | None:
        """The next line of the worker's stdout; None on timeout, b"" at EOF."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                line, self._buf = self._buf, b""
                return line
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line + b"\n"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            line = self._readline(max(0.0, deadline - time.monotonic()))
            if line is None:
                raise RuntimeError(f"worker {self.kind} not ready after {timeout:g} s: {self.stderr()}")
            if not line:
                raise RuntimeError(f"worker {self.kind} exited ({self.proc.wait()}) before ready: {self.stderr()}")
            if line.strip() == b"READY":
                return
            self._lines.append(line)

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def ask(self, line: str, timeout: float = 60.0) -> dict:
        """Send a command line; return the next JSON line the worker prints."""
        self.tell(line)
        deadline = time.monotonic() + timeout
        while True:
            got = self._readline(max(0.0, deadline - time.monotonic()))
            if got is None:
                raise RuntimeError(f"worker {self.kind} did not answer {line!r} in {timeout:g} s: {self.stderr()}")
            if not got:
                raise RuntimeError(f"worker {self.kind} exited ({self.proc.wait()}): {self.stderr()}")
            if got.lstrip().startswith(b"{"):
                return json.loads(got)

    def result(self, timeout: float = 120.0) -> dict:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise RuntimeError(f"worker {self.kind} did not finish in {timeout:g} s: {self.stderr()}") from None
        lines = [ln for ln in [*self._lines, *(self._buf + out).splitlines()] if ln.strip()]
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(f"worker {self.kind} failed ({self.proc.returncode}): {self.stderr()}")
        return json.loads(lines[-1])

    def stderr(self) -> str:
        try:
            self.err.seek(0)
            return self.err.read().decode(errors="replace")[-3000:]
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                f.close()
        with contextlib.suppress(Exception):
            self.err.close()


def run_worker(kind: str, params: dict, timeout: float = 300.0, module: str | None = None) -> dict:
    with Worker(kind, params, module) as w:
        return w.result(timeout)


# ----------------------------------------------------------------------------------------------
# raw HTTP/1.1 over asyncio (the worker side)
# ----------------------------------------------------------------------------------------------
async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server closes) of one response; Content-Length or chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, chunked, close = None, False, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            close = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    elif length is not None:
        body = await reader.readexactly(length) if length else b""
    else:
        body = await reader.read()
        close = True
    return status, body, close


def symbol_names(n: int, prefix: str = "B") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


TS_MARK = b"T" * 17  # "%17.6f" of an epoch second: 10 digits, a point, 6 digits
KEY_MARK = b"@" * 12


def batch_template(batch: int, symbols: list[str], prefix: str, offset: int = 0) -> bytes:
    """A tick body with fixed-width placeholders for the request number and the trade time."""
    items = []
    for i in range(batch):
        sym = symbols[(offset + i) % len(symbols)]
        price = 100.0 + ((offset + i) * 7919 % 10_000) / 100
        items.append(b'{"idempotencyKey":"%s-%s-%d","symbol":"%s","price":%.2f,"ts":%s,"volume":%.3f}'
                     % (prefix.encode(), KEY_MARK, i, sym.encode(), price, TS_MARK, 0.5 + (i % 7) / 10))
    return b'{"source":"bench","items":[' + b",".join(items) + b"]}"


async def _gen(p: dict) -> dict:
    """POST batches from ``conns`` keep-alive connections for ``duration`` s (or ``requests`` in all).

    Closed loop (each connection sends its next request when the previous is answered) unless
    ``rate`` (ticks/s) is given: then requests leave on a fixed schedule, and latency counts from
    the scheduled start (so a stall is not hidden by the client waiting: no coordinated omission).
    Every tick's ``ts`` is the wall clock when its request is written; keys are unique per request.
    """
    host, port, conns, batch = p["host"], p["port"], p["conns"], p["batch"]
    symbols = symbol_names(p["symbols"], p.get("symbol_prefix", "B"))
    prefix = p["prefix"]
    tpl = batch_template(batch, symbols, prefix)
    head = (f"POST /api/v1/webhooks/ticks HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"x-api-key: {API_KEY}\r\nContent-Length: {len(tpl)}\r\n\r\n").encode()
    rate = p.get("rate")
    max_requests = p.get("requests")
    interval = conns * batch / rate if rate else 0.0
    latencies: list[float] = []
    service: list[float] = []
    tot = {"requests": 0, "sent_ticks": 0, "accepted": 0, "duplicates": 0, "skipped": 0, "errors": 0}
    statuses: dict[str, int] = {}
    counter = [0]
    lateness: list[float] = []  # how far behind schedule requests left (paced mode)

    async def connection(k: int, t0: float, stop_at: float) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        sent = 0
        try:
            while True:
                scheduled = t0 + (sent + k / conns) * interval if rate else None
                now = time.perf_counter()
                if scheduled is not None and scheduled > now:
                    if scheduled >= stop_at:
                        break
                    await asyncio.sleep(scheduled - now)
                if time.perf_counter() >= stop_at and scheduled is None:
                    break
                if max_requests is not None and counter[0] >= max_requests:
                    break
                counter[0] += 1
                n = counter[0]
                start = time.perf_counter()
                body = tpl.replace(KEY_MARK, b"%012d" % n).replace(TS_MARK, b"%17.6f" % time.time())
                writer.write(head + body)
                status, resp, close = await read_response(reader)
                end = time.perf_counter()
                sent += 1
                latencies.append(end - (scheduled if scheduled is not None else start))
                service.append(end - start)
                if scheduled is not None:
                    lateness.append(start - scheduled)
                tot["requests"] += 1
                tot["sent_ticks"] += batch
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 202:
                    r = json.loads(resp)
                    tot["accepted"] += r.get("accepted", 0)
                    tot["duplicates"] += r.get("duplicates", 0)
                    tot["skipped"] += r.get("skipped", 0)
                else:
                    tot["errors"] += 1
                    if tot["errors"] <= 3:
                        print(f"gen: HTTP {status}: {resp[:200]!r}", file=sys.stderr)
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                if scheduled is not None and time.perf_counter() >= stop_at:
                    break
        finally:
            writer.close()

    ru0 = os.times()
    with CpuMeter(**({"server": p["server_pid"]} if p.get("server_pid") else {})) as cpu:
        t0 = time.perf_counter()
        stop_at = t0 + p.get("duration", 1e9)
        await asyncio.gather(*(connection(k, t0, stop_at) for k in range(conns)))
        elapsed = time.perf_counter() - t0
    ru1 = os.times()
    out = {**tot, "statuses": statuses, "elapsed": elapsed, "rate": tot["accepted"] / elapsed if elapsed else 0.0,
           "latency": pcts(latencies), "service": pcts(service), "cpu": cpu.result}
    out["cpu"]["generator_cores"] = round((ru1.user + ru1.system - ru0.user - ru0.system) / elapsed, 3)
    if rate:
        out["target_rate"] = rate
        out["behind_schedule"] = pcts(lateness)
    return out


async def _read(p: dict) -> dict:
    """Time GETs of ``paths`` (templates with ``{sym}``) over ``symbols`` from ``conns`` connections."""
    host, port = p["host"], p["port"]
    symbols = p["symbols"]
    paths: dict[str, str] = p["paths"]
    lat: dict[str, list[float]] = {k: [] for k in paths}
    statuses: dict[str, int] = {}
    rng = random.Random(p.get("seed", 1))

    async def connection(k: int, stop_at: float) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        names = list(paths)
        i = k
        try:
            while time.perf_counter() < stop_at:
                label = names[i % len(names)]
                i += 1
                path = paths[label].format(sym=rng.choice(symbols))
                t = time.perf_counter()
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
                status, _, close = await read_response(reader)
                lat[label].append(time.perf_counter() - t)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(connection(k, t0 + p["duration"]) for k in range(p["conns"])))
    elapsed = time.perf_counter() - t0
    return {"elapsed": elapsed, "statuses": statuses, "latency": {k: pcts(v) for k, v in lat.items()},
            "requests_per_s": sum(len(v) for v in lat.values()) / elapsed}


async def _sse(p: dict) -> None:
    """Hold ``conns`` SSE subscriptions (all symbols unless ``path`` filters). Prints READY once
    every one has its hello; then each line on stdin prints a JSON snapshot of what arrived since
    the previous one (and resets the counters); ``stop`` or EOF prints the last one and exits.
    Every ``sample_every``-th connection also parses each event's ``ts`` and records
    (arrival wall clock - ts): the tick-to-client delay when the poster set ts to its send time."""
    host, port, conns = p["host"], p["port"], p["conns"]
    path = p.get("path", "/realtime/ticks")
    sample_every = max(1, p.get("sample_every", 1))
    st = {"events": [0] * conns, "resyncs": [0] * conns, "lat": [], "first": None, "last": None}
    hellos = asyncio.Semaphore(0)
    commands: asyncio.Queue[str] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    loads = json.loads
    try:
        import orjson
        loads = orjson.loads
    except ImportError:  # pragma: no cover
        pass
    connect_gate = asyncio.Semaphore(p.get("connect_parallel", 50))  # the server's listen backlog is 100
    ended: set[int] = set()

    async def connection(k: int) -> None:
        async with connect_gate:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"SSE connect: {head[:200]!r}")
        chunked = b"chunked" in head.lower()
        sample = k % sample_every == 0
        buf = b""
        hello = False
        try:
            while True:
                if chunked:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        return
                    data = (await reader.readexactly(size + 2))[:-2]
                else:
                    data = await reader.read(65536)
                    if not data:
                        return
                now = time.time()
                buf += data
                if b"\n\n" not in buf:
                    continue
                *frames, buf = buf.split(b"\n\n")
                n = 0
                for frame in frames:
                    if frame.startswith(b"id:"):
                        n += 1
                        if sample:
                            j = frame.find(b"\ndata: ")
                            if j >= 0:
                                st["lat"].append(now - loads(frame[j + 7:])["ts"])
                    elif frame.startswith(b"event: resync"):
                        st["resyncs"][k] += 1
                    elif not hello and b'"ok":true' in frame:
                        hello = True
                        hellos.release()
                if n:
                    st["events"][k] += n
                    if st["first"] is None:
                        st["first"] = now
                    st["last"] = now
        finally:
            ended.add(k)
            writer.close()

    def snapshot() -> dict:
        ev, rs = st["events"], st["resyncs"]
        out = {"conns": conns, "events": sum(ev), "events_min_per_conn": min(ev), "events_max_per_conn": max(ev),
               "resyncs": sum(rs), "conns_resynced": sum(1 for r in rs if r), "conns_ended": len(ended),
               "latency": pcts(st["lat"]), "sampled_conns": len(range(0, conns, sample_every)),
               "first_event": st["first"], "last_event": st["last"]}
        if p.get("raw_latency"):  # for merging across processes
            out["lat_ms"] = [round(x * 1e3, 3) for x in st["lat"]]
        st.update(events=[0] * conns, resyncs=[0] * conns, lat=[], first=None, last=None)
        return out

    def on_stdin() -> None:
        line = sys.stdin.readline()
        commands.put_nowait(line.strip() if line else "stop")

    tasks = [asyncio.ensure_future(connection(k)) for k in range(conns)]
    try:
        wait_all = asyncio.ensure_future(asyncio.gather(*(hellos.acquire() for _ in range(conns))))
        done, _ = await asyncio.wait([wait_all, *tasks], timeout=p.get("connect_timeout", 60),
                                     return_when=asyncio.FIRST_COMPLETED)
        if wait_all not in done:
            wait_all.cancel()
            for t in done:
                if t.exception():
                    raise t.exception()
            raise RuntimeError("SSE subscribers not all connected in time")
        snapshot()  # the hellos are not events
        print("READY", flush=True)
        loop.add_reader(sys.stdin.fileno(), on_stdin)
        while True:
            cmd = await commands.get()
            print(json.dumps(snapshot()), flush=True)
            if cmd == "stop":
                break
        loop.remove_reader(sys.stdin.fileno())
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


WORKERS = {"gen": _gen, "read": _read, "sse": _sse}


def main(argv: list[str]) -> int:
    kind, params = argv[0], json.loads(argv[1])
    out = asyncio.run(WORKERS[kind](params))
    if out is not None:
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
