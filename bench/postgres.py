"""Scenario `postgres`: durable ingest into Postgres, against raw COPY of the same rows.

Figures of issue 3 (and the naive baseline of issue 5), each the median of N runs with min-max:

- A  ``http``    durable via HTTP: ``python -m candlewick run --no-feeder`` as a subprocess on a
                 fresh database; a load generator in another process (plain asyncio, raw HTTP/1.1
                 over keep-alive sockets, request bytes built before the clock starts, so its own
                 CPU cost is a few percent of a core; it reports it) posts batches of 1,000 ticks
                 over 100 symbols with unique keys and current timestamps from K connections.
                 Ack latency = request written -> 202 read. Afterwards count(*) of ticks_raw must
                 equal the ticks acknowledged.
- A' ``inproc``  durable in-process: ``Engine(Config(database_url=...)).submit`` from K trio tasks
                 inside ``trio_asyncio.open_loop()`` -- the store + flusher ceiling without HTTP.
- B  ``copy``    raw COPY: the same rows (key, symbol, price, ts, volume) with asyncpg
                 ``copy_records_to_table`` in batches of 5,000 into an unindexed table, plain asyncio
                 in its own process (importing trio_asyncio would slow asyncio down), 1 writer; also
                 4 concurrent writers for reference.
- C  ``naive``   naive baseline: one multi-row ``INSERT ... ON CONFLICT (key) DO NOTHING`` per request
                 of 1,000 into a table keyed by the idempotency key (no other index), autocommit,
                 K connections, no aggregates; candles are computed with SQL on read (timed once).

Every worker is a separate process (``python -m bench.postgres _worker KIND JSON``) that prints one
JSON line. The orchestrator creates ``cw_bench_<random>`` on postgresql://127.0.0.1:5432/postgres
(``--admin-dsn``) and drops it at the end. Results go to ``bench/results/postgres-<timestamp>.json``.

Run: ``python -m bench.postgres [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
ADMIN_DSN = "postgresql://127.0.0.1:5432/postgres"
API_KEY = "bench"
REQUEST_SIZE = 1_000
COPY_BATCH = 5_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------------------------
# workload: the same rows for every scenario
# ----------------------------------------------------------------------------------------------
def make_rows(n: int, symbols: int, prefix: str, t0: float, seed: int = 7,
              rate: float = 150_000.0) -> list[tuple[str, str, float, float, float]]:
    """(key, symbol, price, ts, volume): unique keys, 100 symbols, timestamps from ``t0`` on at ``rate``."""
    rng = random.Random(seed)
    names = [f"SYM{i:03d}" for i in range(symbols)]
    rnd = rng.random
    pick = rng.randrange
    return [(f"{prefix}:{i}", names[pick(symbols)], round(100.0 + 10 * rnd(), 4), round(t0 + i / rate, 6),
             round(rnd(), 4)) for i in range(n)]


def _pcts(values: list[float]) -> dict:
    if not values:
        return {}
    s = sorted(values)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(p * len(s)))]

    return {"p50_ms": q(0.50) * 1e3, "p90_ms": q(0.90) * 1e3, "p99_ms": q(0.99) * 1e3, "max_ms": s[-1] * 1e3,
            "mean_ms": statistics.fmean(s) * 1e3, "n": len(s)}


# ----------------------------------------------------------------------------------------------
# CPU accounting (/proc): machine busy cores, the server process, the postgres processes
# ----------------------------------------------------------------------------------------------
def _machine_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:9]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


def _pid_jiffies(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            tail = f.read().rsplit(")", 1)[1].split()
        return int(tail[11]) + int(tail[12])  # utime, stime
    except (OSError, IndexError, ValueError):
        return None


def _postgres_pids() -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == "postgres":
                        out.append(int(entry))
            except OSError:
                pass
    return out


class CpuMeter:
    """Cores used over a window: whole machine, given pids, and postgres processes alive throughout."""

    def __init__(self, pids: dict[str, int] | None = None) -> None:
        self.pids = pids or {}

    def start(self) -> None:
        self.t = time.perf_counter()
        self.machine = _machine_jiffies()
        self.procs = {name: _pid_jiffies(pid) for name, pid in self.pids.items()}
        self.pg = {pid: _pid_jiffies(pid) for pid in _postgres_pids()}

    def stop(self) -> dict:
        elapsed = time.perf_counter() - self.t
        busy, total = _machine_jiffies()
        out = {"machine_busy_cores": (busy - self.machine[0]) / CLK_TCK / elapsed}
        for name, pid in self.pids.items():
            now, before = _pid_jiffies(pid), self.procs.get(name)
            if now is not None and before is not None:
                out[f"{name}_cores"] = (now - before) / CLK_TCK / elapsed
        pg = 0
        for pid in _postgres_pids():  # a backend born inside the window spent all its CPU in it
            now, before = _pid_jiffies(pid), self.pg.get(pid, 0)
            if now is not None and before is not None:
                pg += now - before
        out["postgres_cores"] = pg / CLK_TCK / elapsed
        return out


def cpu_per_tick(cpu: dict, elapsed: float, ticks: int) -> dict:
    """CPU microseconds per stored tick, per process group; ``other`` is load we did not cause
    (the machine is shared): busy cores minus ours. Robust to that load, unlike ticks/s."""
    if not ticks:
        return {}
    ours = {k[:-6]: v for k, v in cpu.items() if k.endswith("_cores") and k != "machine_busy_cores"}
    out = {name: cores * elapsed / ticks * 1e6 for name, cores in ours.items()}
    out["ours"] = sum(out.values())
    out["other_load_cores"] = max(0.0, cpu.get("machine_busy_cores", 0.0) - sum(ours.values()))
    return out


# ----------------------------------------------------------------------------------------------
# workers (each its own process; print one JSON line)
# ----------------------------------------------------------------------------------------------
async def _http_gen(p: dict) -> dict:
    """Raw HTTP/1.1 keep-alive POSTs of precomputed bodies from K connections (plain asyncio)."""
    try:
        import orjson
        dumps = orjson.dumps
    except ImportError:  # pragma: no cover
        def dumps(o):
            return json.dumps(o, separators=(",", ":")).encode()
    host, port = p["host"], p["port"]
    rows = make_rows(p["ticks"], p["symbols"], p["prefix"], time.time())
    requests = []
    head = (f"POST /api/v1/webhooks/ticks HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"x-api-key: {API_KEY}\r\n").encode()
    for i in range(0, len(rows), REQUEST_SIZE):
        items = [{"idempotencyKey": k, "symbol": s, "price": pr, "ts": ts, "volume": v}
                 for k, s, pr, ts, v in rows[i:i + REQUEST_SIZE]]
        body = dumps({"source": "bench", "items": items})
        requests.append((len(items), head + b"Content-Length: %d\r\n\r\n" % len(body) + body))
    del rows
    latencies: list[float] = []
    totals = {"sent": 0, "accepted": 0, "duplicates": 0, "errors": 0, "statuses": {}}
    deadline_box = [0.0]
    it = iter(requests)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for n, data in it:
                if time.perf_counter() > deadline_box[0]:
                    break
                t = time.perf_counter()
                writer.write(data)
                head_bytes = await reader.readuntil(b"\r\n\r\n")
                lines = head_bytes.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                length, close = 0, False
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "connection" and value.strip().lower() == "close":
                        close = True
                body = await reader.readexactly(length) if length else b""
                latencies.append(time.perf_counter() - t)
                totals["sent"] += n
                totals["statuses"][status] = totals["statuses"].get(status, 0) + 1
                if status == 202:
                    r = json.loads(body)
                    totals["accepted"] += r.get("accepted", 0)
                    totals["duplicates"] += r.get("duplicates", 0)
                else:
                    totals["errors"] += 1
                    if totals["errors"] <= 3:
                        print(f"HTTP {status}: {body[:300]!r}", file=sys.stderr)
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    meter = CpuMeter({"server": p["server_pid"]} if p.get("server_pid") else None)
    ru0 = os.times()
    meter.start()
    started = time.perf_counter()
    deadline_box[0] = started + p["max_seconds"]
    await asyncio.gather(*(connection() for _ in range(p["conns"])))
    elapsed = time.perf_counter() - started
    cpu = meter.stop()
    ru1 = os.times()
    cpu["generator_cores"] = (ru1.user + ru1.system - ru0.user - ru0.system) / elapsed
    return {"elapsed": elapsed, "rate": totals["accepted"] / elapsed, **totals,
            "statuses": {str(k): v for k, v in totals["statuses"].items()}, "latency": _pcts(latencies), "cpu": cpu}


def _inproc(p: dict) -> dict:
    """Engine.submit from K trio tasks, PostgresStore inside trio_asyncio.open_loop()."""
    import trio
    import trio_asyncio

    from candlewick.config import Config
    from candlewick.engine import Engine
    from candlewick.schema import Tick

    rows = make_rows(p["ticks"], p["symbols"], p["prefix"], time.time())
    ticks = [Tick(*r) for r in rows]
    chunks = [ticks[i:i + REQUEST_SIZE] for i in range(0, len(ticks), REQUEST_SIZE)]
    out: dict = {}

    async def main() -> None:
        config = Config(feeder=False, api_keys=("x",), database_url=p["dsn"])
        async with trio_asyncio.open_loop():
            engine = Engine(config)
            async with trio.open_nursery() as nursery:
                await nursery.start(engine.run)
                symbols = sorted({t.symbol for t in ticks})
                # warm-up: every actor exists, the pool has a connection, the statements are prepared
                await engine.submit([Tick(f"{p['prefix']}:w:{s}", s, 1.0, ticks[0].ts, 0.0) for s in symbols])
                flushers = getattr(engine, "flushers", None) or [engine.flusher]  # lanes, or the one flusher
                flushes0 = sum(f.flushes for f in flushers)
                written0 = sum(f.ticks_written for f in flushers)
                latencies: list[float] = []
                accepted = 0
                meter = CpuMeter()
                meter.start()
                ru0 = os.times()
                started = time.perf_counter()
                deadline = started + p["max_seconds"]

                async def client(k: int) -> None:
                    nonlocal accepted
                    for chunk in chunks[k::p["conns"]]:
                        if time.perf_counter() > deadline:
                            break
                        t = time.perf_counter()
                        receipt = await engine.submit(chunk)
                        latencies.append(time.perf_counter() - t)
                        accepted += receipt.accepted

                async with trio.open_nursery() as load:
                    for k in range(p["conns"]):
                        load.start_soon(client, k)
                elapsed = time.perf_counter() - started
                cpu = meter.stop()
                ru1 = os.times()
                cpu["engine_cores"] = (ru1.user + ru1.system - ru0.user - ru0.system) / elapsed
                flushes = sum(f.flushes for f in flushers) - flushes0
                written = sum(f.ticks_written for f in flushers) - written0
                out.update(elapsed=elapsed, rate=accepted / elapsed, accepted=accepted, sent=accepted,
                           latency=_pcts(latencies), cpu=cpu, flushes=flushes,
                           avg_flush_ticks=written / flushes if flushes else 0, warmup_ticks=len(symbols),
                           flush_lanes=len(flushers))
                engine.stop()

    trio.run(main)
    return out


async def _copy(p: dict) -> dict:
    import asyncpg

    rows = make_rows(p["ticks"], p["symbols"], p["prefix"], time.time())
    batches = [rows[i:i + COPY_BATCH] for i in range(0, len(rows), COPY_BATCH)]
    cols = ["idempotency_key", "symbol", "price", "ts", "volume"]
    cons = [await asyncpg.connect(p["dsn"]) for _ in range(p["writers"])]
    try:
        for con in cons:  # warm-up: type introspection for the table
            await con.copy_records_to_table(p["table"], records=rows[:1], columns=cols)
        await cons[0].execute(f"TRUNCATE {p['table']}")
        meter = CpuMeter()
        meter.start()
        started = time.perf_counter()

        async def writer(k: int) -> None:
            for b in batches[k::len(cons)]:
                await cons[k].copy_records_to_table(p["table"], records=b, columns=cols)

        await asyncio.gather(*(writer(k) for k in range(len(cons))))
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        count = await cons[0].fetchval(f"SELECT count(*) FROM {p['table']}")
    finally:
        for con in cons:
            await con.close()
    return {"elapsed": elapsed, "rate": count / elapsed, "accepted": count, "sent": len(rows), "cpu": cpu}


async def _naive(p: dict) -> dict:
    import asyncpg

    rows = make_rows(p["ticks"], p["symbols"], p["prefix"], time.time())
    chunks = [rows[i:i + REQUEST_SIZE] for i in range(0, len(rows), REQUEST_SIZE)]

    def sql(n: int) -> str:
        values = ",".join(f"(${5 * i + 1},${5 * i + 2},${5 * i + 3},${5 * i + 4},${5 * i + 5})" for i in range(n))
        return (f"INSERT INTO naive_ticks (idempotency_key, symbol, price, ts, volume) VALUES {values} "
                "ON CONFLICT (idempotency_key) DO NOTHING")

    full = sql(REQUEST_SIZE)
    cons = [await asyncpg.connect(p["dsn"]) for _ in range(p["conns"])]
    latencies: list[float] = []
    accepted = 0
    try:
        meter = CpuMeter()
        meter.start()
        started = time.perf_counter()
        deadline = started + p["max_seconds"]

        async def client(k: int) -> None:
            nonlocal accepted
            con = cons[k]
            for chunk in chunks[k::len(cons)]:
                if time.perf_counter() > deadline:
                    break
                t = time.perf_counter()
                status = await con.execute(full if len(chunk) == REQUEST_SIZE else sql(len(chunk)),
                                           *[x for r in chunk for x in r])
                latencies.append(time.perf_counter() - t)
                accepted += int(status.rsplit(" ", 1)[1])

        await asyncio.gather(*(client(k) for k in range(len(cons))))
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        # candles on read: the 1-minute OHLC of one symbol, then of all symbols, from the raw table
        candle_one = """SELECT floor(ts / 60) * 60 AS bucket, (array_agg(price ORDER BY ts))[1] AS open,
                max(price), min(price), (array_agg(price ORDER BY ts DESC))[1] AS close, sum(volume), count(*)
            FROM naive_ticks WHERE symbol = $1 GROUP BY 1 ORDER BY 1"""
        candle_all = """SELECT symbol, floor(ts / 60) * 60 AS bucket, (array_agg(price ORDER BY ts))[1] AS open,
                max(price), min(price), (array_agg(price ORDER BY ts DESC))[1] AS close, sum(volume), count(*)
            FROM naive_ticks GROUP BY 1, 2"""
        t = time.perf_counter()
        await cons[0].fetch(candle_one, rows[0][1])
        one_ms = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        await cons[0].fetch(candle_all)
        all_ms = (time.perf_counter() - t) * 1e3
    finally:
        for con in cons:
            await con.close()
    return {"elapsed": elapsed, "rate": accepted / elapsed, "accepted": accepted, "sent": accepted,
            "latency": _pcts(latencies), "cpu": cpu, "candles_on_read_ms": {"one_symbol": one_ms,
                                                                            "all_symbols": all_ms}}


def worker_main(kind: str, params: dict) -> None:
    if kind == "http":
        out = asyncio.run(_http_gen(params))
    elif kind == "inproc":
        out = _inproc(params)
    elif kind == "copy":
        out = asyncio.run(_copy(params))
    elif kind == "naive":
        out = asyncio.run(_naive(params))
    else:
        raise SystemExit(f"unknown worker {kind}")
    print(json.dumps(out))


# ----------------------------------------------------------------------------------------------
# orchestrator (plain asyncio for admin SQL; never imports trio_asyncio)
# ----------------------------------------------------------------------------------------------
def _dsn_for(admin_dsn: str, db: str) -> str:
    u = urlsplit(admin_dsn)
    return urlunsplit((u.scheme, u.netloc, "/" + db, u.query, u.fragment))


def _sql(dsn: str, *statements: str, fetch: bool = False):
    import asyncpg

    async def run():
        con = await asyncpg.connect(dsn)
        try:
            out = None
            for s in statements:
                out = await (con.fetchval(s) if fetch else con.execute(s))
            return out
        finally:
            await con.close()

    return asyncio.run(run())


def _run_worker(kind: str, params: dict, timeout: float = 600) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.postgres", "_worker", kind, json.dumps(params)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    if proc.stderr.strip():
        print(proc.stderr.strip()[-1000:], file=sys.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="cw-bench-server-", suffix=".log", delete=False)
        env = {**os.environ, "DATABASE_URL": dsn, "API_KEYS": API_KEY}
        env.pop("REDIS_URL", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "candlewick", "run", "--no-feeder", "--port",
                                      str(self.port)], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}; log {self.log.name}")
            try:
                if _get(self.base + "/health/readiness")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after 60 s; log {self.log.name}")
            time.sleep(0.1)

    def flusher(self) -> dict:
        """The flusher figures, summed over its lanes ("flusher" or "flusher:<i>")."""
        tree = json.loads(_get(self.base + "/ops/health/supervisor")[1])
        lanes = [c for c in tree["children"] if c["name"].split(":")[0] == "flusher"]
        out = {k: sum(c.get(k, 0) for c in lanes) for k in ("flushes", "ticksWritten", "failures")}
        out["lanes"] = len(lanes)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _summary(runs: list[dict]) -> dict:
    rates = [r["rate"] for r in runs]
    out = {"runs": runs, "rate_median": statistics.median(rates), "rate_min": min(rates), "rate_max": max(rates)}
    for part in ("server", "engine", "postgres", "ours", "other_load_cores"):
        vals = [r["us_per_tick"][part] for r in runs if part in r.get("us_per_tick", {})]
        if vals:
            out[f"{part}_median" if part == "other_load_cores" else f"{part}_us_per_tick_median"] = \
                statistics.median(vals)
    lat = [r["latency"] for r in runs if r.get("latency")]
    if lat:
        out["p50_ms_median"] = statistics.median(x["p50_ms"] for x in lat)
        out["p99_ms_median"] = statistics.median(x["p99_ms"] for x in lat)
    return out


def machine_facts(dsn: str) -> dict:
    facts = {"cores": os.cpu_count(), "python": sys.version.split()[0],
             "implementation": platform.python_implementation(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            facts["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
        with open("/proc/meminfo") as f:
            facts["mem_total"] = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    facts["postgres"] = _sql(dsn, "SELECT version()", fetch=True)
    try:  # which code was measured: the tree is edited while benchmarks run
        git = ["git", "-C", str(ROOT)]
        facts["git_head"] = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        facts["git_dirty"] = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                                            capture_output=True, text=True).stdout.split("\n")[:-1]
    except OSError:
        pass
    for name in ("fsync", "synchronous_commit", "wal_level", "shared_buffers", "max_wal_size", "full_page_writes"):
        facts[f"pg_{name}"] = _sql(dsn, f"SHOW {name}", fetch=True)
    for mod in ("asyncpg", "trio", "trio_asyncio", "hypercorn", "quart_trio"):
        try:
            facts[mod] = __import__("importlib.metadata").metadata.version(mod.replace("_", "-"))
        except Exception:  # noqa: BLE001
            pass
    return facts


def orchestrate(args: argparse.Namespace) -> dict:
    if args.quick:
        ticks, repeats, conns_http = 20_000, 1, [8]
        max_seconds = 5.0
    else:
        ticks, repeats, conns_http = args.ticks, args.repeats, [int(x) for x in args.conns.split(",")]
        max_seconds = args.max_seconds
    symbols = 100
    db = f"cw_bench_{secrets.token_hex(4)}"
    dsn = _dsn_for(args.admin_dsn, db)
    _sql(args.admin_dsn, f"CREATE DATABASE {db}")
    print(f"database {db}; {ticks:,} ticks x {repeats} runs per figure, {symbols} symbols", file=sys.stderr)
    server = None
    tag = secrets.token_hex(3)
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick, "ticks": ticks,
                     "repeats": repeats, "symbols": symbols, "request_size": REQUEST_SIZE, "copy_batch": COPY_BATCH,
                     "generator": "python asyncio raw HTTP/1.1 keep-alive, request bytes prebuilt (orjson)",
                     "scenarios": {}}
    try:
        results["machine"] = machine_facts(dsn)
        _sql(dsn, "CREATE TABLE copy_ticks (idempotency_key text, symbol text, price float8, ts float8, volume float8)",
             "CREATE TABLE naive_ticks (idempotency_key text PRIMARY KEY, symbol text NOT NULL, price float8 NOT NULL,"
             " ts float8 NOT NULL, volume float8 NOT NULL)")
        server = Server(dsn)  # applies the migrations
        results["server_log"] = server.log.name
        # warm-up the server: every symbol actor, a pooled connection, prepared statements
        _run_worker("http", {"host": "127.0.0.1", "port": server.port, "ticks": 2_000, "symbols": symbols,
                             "prefix": f"{tag}-warm", "conns": 2, "max_seconds": 30})
        durable_tables = "TRUNCATE ticks_raw, ohlc_1m, metrics_1m"
        plan: list[tuple[str, str, dict]] = [("copy_1w", "copy", {"writers": 1}), ("copy_4w", "copy", {"writers": 4})]
        plan += [(f"http_k{k}", "http", {"conns": k}) for k in conns_http]
        plan += [("inproc_k8", "inproc", {"conns": 8}), ("naive_k8", "naive", {"conns": 8})]
        runs: dict[str, list[dict]] = {name: [] for name, _, _ in plan}
        for rep in range(repeats):  # interleaved, so drift on a shared machine hits every scenario alike
            for name, kind, extra in plan:
                prefix = f"{tag}-{name}-{rep}"
                base = {"ticks": ticks, "symbols": symbols, "prefix": prefix, "max_seconds": max_seconds, **extra}
                if kind == "copy":
                    _sql(dsn, "TRUNCATE copy_ticks", "CHECKPOINT")
                    r = _run_worker("copy", {**base, "dsn": dsn, "table": "copy_ticks"})
                elif kind == "naive":
                    _sql(dsn, "TRUNCATE naive_ticks", "CHECKPOINT")
                    r = _run_worker("naive", {**base, "dsn": dsn})
                    r["db_count"] = _sql(dsn, "SELECT count(*) FROM naive_ticks", fetch=True)
                elif kind == "http":
                    _sql(dsn, durable_tables, "CHECKPOINT")
                    f0 = server.flusher()
                    r = _run_worker("http", {**base, "host": "127.0.0.1", "port": server.port,
                                             "server_pid": server.proc.pid})
                    f1 = server.flusher()
                    flushes = f1["flushes"] - f0["flushes"]
                    r["flushes"] = flushes
                    r["avg_flush_ticks"] = (f1["ticksWritten"] - f0["ticksWritten"]) / flushes if flushes else 0
                    r["flush_failures"] = f1["failures"] - f0["failures"]
                    r["flush_lanes"] = f1["lanes"]
                    r["db_count"] = _sql(dsn, "SELECT count(*) FROM ticks_raw", fetch=True)
                else:  # inproc
                    _sql(dsn, durable_tables, "CHECKPOINT")
                    r = _run_worker("inproc", {**base, "dsn": dsn})
                    r["db_count"] = _sql(dsn, "SELECT count(*) FROM ticks_raw", fetch=True) - r.pop("warmup_ticks")
                if kind in ("http", "inproc", "naive"):
                    r["count_matches_acks"] = r["db_count"] == r["accepted"]
                r["us_per_tick"] = cpu_per_tick(r["cpu"], r["elapsed"], r["accepted"])
                runs[name].append(r)
                lat = r.get("latency", {})
                print(f"  run {rep + 1} {name:<10} {r['rate']:>10,.0f} ticks/s"
                      + (f"  p50 {lat['p50_ms']:.1f} ms p99 {lat['p99_ms']:.1f} ms" if lat else "")
                      + (f"  db_count==acks {r['count_matches_acks']}" if "count_matches_acks" in r else "")
                      + (f"  flush avg {r['avg_flush_ticks']:,.0f} x{r['flush_lanes']} lanes"
                         if "flush_lanes" in r else "")
                      + f"  cpu {json.dumps({k: round(v, 2) for k, v in r['cpu'].items()})}"
                      + f"  us/tick {json.dumps({k: round(v, 2) for k, v in r['us_per_tick'].items()})}",
                      file=sys.stderr)
        copy_median = statistics.median(r["rate"] for r in runs["copy_1w"])
        for name, kind, extra in plan:
            s = _summary(runs[name])
            s.update(kind=kind, **extra)
            s["ratio_to_copy_1w"] = s["rate_median"] / copy_median
            results["scenarios"][name] = s
    finally:
        if server is not None:
            server.stop()
        try:
            _sql(args.admin_dsn, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        except Exception as exc:  # noqa: BLE001
            print(f"could not drop {db}: {exc}", file=sys.stderr)
    return results


LABELS = {"copy": "B  raw COPY", "http": "A  durable via HTTP", "inproc": "A' durable in-process",
          "naive": "C  naive INSERT"}


def print_table(results: dict) -> None:
    print(f"{'scenario':<26} {'ticks/s median (min-max)':>30} {'p50 ms':>8} {'p99 ms':>8} {'/COPY':>6}"
          f" {'/naive':>6} {'py us/t':>8} {'pg us/t':>8} {'other':>6}  ok")
    naive = next((s["rate_median"] for s in results["scenarios"].values() if s["kind"] == "naive"), None)
    for s in results["scenarios"].values():
        label = f"{LABELS[s['kind']]} " + (f"K={s['conns']}" if "conns" in s else f"{s['writers']}w")
        p50 = f"{s['p50_ms_median']:.1f}" if "p50_ms_median" in s else "-"
        p99 = f"{s['p99_ms_median']:.1f}" if "p99_ms_median" in s else "-"
        py = s.get("server_us_per_tick_median", s.get("engine_us_per_tick_median"))
        py = f"{py:.1f}" if py is not None else "-"
        pg = f"{s['postgres_us_per_tick_median']:.1f}" if "postgres_us_per_tick_median" in s else "-"
        other = f"{s['other_load_cores_median']:.2f}" if "other_load_cores_median" in s else "-"
        vs_naive = f"{s['rate_median'] / naive:.2f}" if naive else "-"
        ok = all(r.get("count_matches_acks", True) for r in s["runs"])
        print(f"{label:<26} {s['rate_median']:>12,.0f} ({s['rate_min']:>7,.0f}-{s['rate_max']:>7,.0f})"
              f" {p50:>8} {p99:>8} {s['ratio_to_copy_1w']:>6.2f} {vs_naive:>6} {py:>8} {pg:>8} {other:>6}"
              f"  {'yes' if ok else 'NO'}")
    print("py/pg us/t: CPU microseconds per stored tick of the server (engine in-process) and of Postgres;"
          " other: busy cores of the machine that were not ours (shared machine)")
    m = results["machine"]
    print(f"machine: {m['cores']} cores, Python {m['python']}, {m['postgres'].split(' on ')[0]}, "
          f"fsync={m['pg_fsync']} synchronous_commit={m['pg_synchronous_commit']}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        worker_main(argv[1], json.loads(argv[2]))
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.postgres", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one run each (smoke test, < 20 s)")
    ap.add_argument("--ticks", type=int, default=500_000, help="ticks per run (default 500,000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--conns", default="4,8,16", help="HTTP connections to try, comma separated")
    ap.add_argument("--max-seconds", type=float, default=20.0, help="stop sending after this long in one run")
    ap.add_argument("--admin-dsn", default=os.environ.get("BENCH_ADMIN_DSN", ADMIN_DSN))
    args = ap.parse_args(argv)
    started = time.perf_counter()
    results = orchestrate(args)
    results["wall_seconds"] = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"postgres-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"results: {path.relative_to(ROOT)}  ({results['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
