"""pgscale part 2: long-history candle reads, each timed over several runs, and the server's RSS under concurrent long reads.

The database is fresh: ``candlewick migrate``, then ``days`` of 1-minute history for one symbol
(bench/_pgscale_seed.py), then the server. First the memory figure, on a server that has served
only one small read (so earlier reads have not already grown its heap): RSS just before, sampled
every 10 ms while ``concurrent`` clients each ask ``interval=1d&limit=2000``, and after. Then each
read path once untimed (cold) and ``runs`` times timed, one after another, each on a new
connection; latency = request sent -> whole body read, on the client.
"""

from __future__ import annotations

import json
import statistics
import threading
import time

from bench._pg import temp_database
from bench._pgscale_db import Pg, cli_commands, migrate
from bench._pgscale_seed import NAMED, SeedError, seed_import, seed_sql
from bench._results import log
from bench._server import Server, http_get

SYMBOL = "HIST1"
PATHS = {"1d_limit400": ("1d", 400), "1h_limit2000": ("1h", 2000), "1m_limit2000": ("1m", 2000)}
CONCURRENT_PATH = ("1d", 2000)


def path(interval: str, limit: int) -> str:
    return f"/api/v1/ticks/{SYMBOL}/history?view=ohlc1m&interval={interval}&limit={limit}"


def expected_items(start: int, end: int, interval: str, limit: int) -> int:
    """Candles a read must return: the buckets the history [start, end) touches, at most ``limit``."""
    s = NAMED[interval]
    off = 345_600 if interval == "1w" else 0
    buckets = (end - 1 - off) // s - (start - off) // s + 1
    return min(limit, buckets)


def timed_get(url: str, timeout: float = 600.0) -> tuple[float, int, bytes]:
    t = time.perf_counter()
    status, body = http_get(url, timeout=timeout)
    return time.perf_counter() - t, status, body


def concurrent_rss(server: Server, n: int) -> dict:
    """``n`` concurrent long reads: the server's RSS before, at its peak while they run, and after."""
    from candlewick.runtime import pid_rss_bytes

    url = server.base + path(*CONCURRENT_PATH)
    mem0 = pid_rss_bytes(server.pid)
    before = mem0["VmRSS"]
    peak = [before]
    done = threading.Event()
    answers: list[tuple[float, int, int]] = []

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], pid_rss_bytes(server.pid).get("VmRSS", 0))
            done.wait(0.01)

    def read() -> None:
        seconds, status, body = timed_get(url)
        answers.append((seconds, status, len(json.loads(body).get("items", [])) if status == 200 else -1))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    readers = [threading.Thread(target=read) for _ in range(n)]
    t = time.perf_counter()
    for r in readers:
        r.start()
    for r in readers:
        r.join()
    wall = time.perf_counter() - t
    done.set()
    sampler.join()
    mem1 = pid_rss_bytes(server.pid)
    after = mem1["VmRSS"]
    if mem1["VmHWM"] > mem0["VmHWM"]:  # the kernel's high-water mark saw a peak between two samples
        peak[0] = max(peak[0], mem1["VmHWM"])
    return {"readers": n, "path": path(*CONCURRENT_PATH), "rss_before_mb": before / 2**20,
            "rss_peak_mb": peak[0] / 2**20, "rss_after_mb": after / 2**20, "growth_mb": (peak[0] - before) / 2**20,
            "wall_s": wall, "statuses": sorted({a[1] for a in answers}), "items": sorted({a[2] for a in answers}),
            "latency_ms": sorted(a[0] * 1e3 for a in answers)}


def time_reads(server: Server, runs: int, start: int, end: int) -> dict:
    out = {}
    for label, (interval, limit) in PATHS.items():
        url = server.base + path(interval, limit)
        cold, status, body = timed_get(url)
        times, statuses = [], {status}
        for _ in range(runs):
            seconds, status, body = timed_get(url)
            times.append(seconds * 1e3)
            statuses.add(status)
        page = json.loads(body).get("items", []) if status == 200 else []
        want = expected_items(start, end, interval, limit)
        full = [c["count"] for c in page[1:-1]]  # whole buckets: the oldest and newest may be partial
        per_bucket = NAMED[interval] // 60 * 4
        out[label] = {"path": path(interval, limit), "cold_ms": cold * 1e3, "runs_ms": times,
                      "median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
                      "statuses": sorted(statuses), "items": len(page), "expected_items": want,
                      "ok": statuses == {200} and len(page) == want and all(c == per_bucket for c in full)}
        r = out[label]
        log(f"  {label}: median {r['median_ms']:.1f} ms (cold {r['cold_ms']:.1f} ms), {r['items']} candles "
            f"(expected {want}), {'ok' if r['ok'] else 'WRONG: ' + str(sorted(statuses))}")
    return out


def run_history(admin_dsn: str, *, days: int, runs: int, concurrent: int) -> dict:
    """Part 2 on a fresh database: seed ``days`` of history, then the RSS and latency figures."""
    # history ends two minutes before the server's lateness horizon (1 h): all of it is past what a
    # running engine holds in memory, so `candlewick import` takes it without --url
    end = (int(time.time()) // 60 - 62) * 60
    start = end - days * 86_400
    minutes = (end - start) // 60
    out: dict = {"symbol": SYMBOL, "days": days, "minutes": minutes, "start": start, "end": end}
    with temp_database(admin_dsn, prefix="cw_bench_pgscale_hist") as dsn:
        migrate(dsn)
        t = time.perf_counter()
        seed = None
        if "import" in cli_commands():
            try:
                seed = seed_import(dsn, SYMBOL, start, minutes)
            except RuntimeError as exc:
                out["import_failed"] = str(exc)
                log(f"  candlewick import failed; seeding with SQL instead: {exc}")
        if seed is None:
            with Pg(dsn) as pg:
                try:
                    seed = seed_sql(pg, SYMBOL, start, minutes)
                except SeedError as exc:
                    out["seed_failed"] = str(exc)
                    log(f"  history: seeding failed, reads not measured: {exc}")
                    return out
        seed["wall_s"] = time.perf_counter() - t
        out["seed"] = seed
        log(f"  history: {days} days of 1-minute candles for {SYMBOL} by {seed['method']} in {seed['wall_s']:.1f} s"
            + "".join(f"; {k} {v['rows']:,} rows ({v['by']})" for k, v in seed.get("tables", {}).items())
            + "".join(f"; note: {n}" for n in seed.get("notes", [])))
        with Server(database_url=dsn, keep_log=True) as server:
            out["server_log"] = server.log_path
            status, _ = http_get(server.base + path("1m", 10))
            if status != 200:
                raise RuntimeError(f"warm-up read answered {status}: {server.log_tail(1500)}")
            out["concurrent"] = c = concurrent_rss(server, concurrent)
            c["ok"] = c["statuses"] == [200] and c["items"] == [expected_items(start, end, *CONCURRENT_PATH)]
            log(f"  {concurrent} concurrent {path(*CONCURRENT_PATH)}: RSS {c['rss_before_mb']:.0f} -> peak "
                f"{c['rss_peak_mb']:.0f} MB (+{c['growth_mb']:.0f} MB), after {c['rss_after_mb']:.0f} MB, "
                f"in {c['wall_s']:.2f} s")
            out["reads"] = time_reads(server, runs, start, end)
    return out
