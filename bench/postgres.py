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

Every worker (bench/_postgres_workers.py) is a separate process (``python -m bench.postgres _worker
KIND JSON``) that prints one JSON line. The orchestrator creates ``cw_bench_<random>`` on
postgresql://127.0.0.1:5432/postgres (``--admin-dsn``) and drops it at the end. Results go to
``bench/results/postgres-<timestamp>.json``.

Run: ``python -m bench.postgres [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
from urllib.parse import urlsplit

from bench._pg import ADMIN_DSN, sql, temp_database
from bench._postgres_workers import COPY_BATCH, REQUEST_SIZE, run_pg_worker, worker_main
from bench._results import BENCH_RESULTS, ROOT, log, machine_facts
from bench._server import Server

DURABLE_TABLES = "TRUNCATE ticks_raw, ohlc_1m, ohlc_rollups"


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


def pg_machine_facts(dsn: str) -> dict:
    """The harness's machine facts, and the Postgres server's version and durability settings."""
    facts = machine_facts()
    facts["postgres"] = sql(dsn, "SELECT version()", fetch=True)
    for name in ("fsync", "synchronous_commit", "wal_level", "shared_buffers", "max_wal_size", "full_page_writes"):
        facts[f"pg_{name}"] = sql(dsn, f"SHOW {name}", fetch=True)
    for mod in ("asyncpg", "trio", "trio_asyncio", "hypercorn", "quart_trio"):  # as this scenario always wrote them
        version = facts["packages"].get(mod.replace("_", "-"))
        if version:
            facts[mod] = version
    return facts


def one_run(kind: str, base: dict, dsn: str, server: Server) -> dict:
    """One run of one figure on emptied, checkpointed tables; the worker's figures, the rows in
    the database and the CPU per tick."""
    if kind == "copy":
        sql(dsn, "TRUNCATE copy_ticks", "CHECKPOINT")
        r = run_pg_worker("copy", {**base, "dsn": dsn, "table": "copy_ticks"})
    elif kind == "naive":
        sql(dsn, "TRUNCATE naive_ticks", "CHECKPOINT")
        r = run_pg_worker("naive", {**base, "dsn": dsn})
        r["db_count"] = sql(dsn, "SELECT count(*) FROM naive_ticks", fetch=True)
    elif kind == "http":
        sql(dsn, DURABLE_TABLES, "CHECKPOINT")
        f0 = server.flusher()
        r = run_pg_worker("http", {**base, "host": server.host, "port": server.port, "server_pid": server.pid})
        f1 = server.flusher()
        flushes = f1["flushes"] - f0["flushes"]
        r["flushes"] = flushes
        r["avg_flush_ticks"] = (f1["ticksWritten"] - f0["ticksWritten"]) / flushes if flushes else 0
        r["flush_failures"] = f1["failures"] - f0["failures"]
        r["flush_lanes"] = f1["lanes"]
        r["db_count"] = sql(dsn, "SELECT count(*) FROM ticks_raw", fetch=True)
    else:  # inproc
        sql(dsn, DURABLE_TABLES, "CHECKPOINT")
        r = run_pg_worker("inproc", {**base, "dsn": dsn})
        r["db_count"] = sql(dsn, "SELECT count(*) FROM ticks_raw", fetch=True) - r.pop("warmup_ticks")
    if kind in ("http", "inproc", "naive"):
        r["count_matches_acks"] = r["db_count"] == r["accepted"]
    r["us_per_tick"] = cpu_per_tick(r["cpu"], r["elapsed"], r["accepted"])
    return r


def orchestrate(args: argparse.Namespace) -> dict:
    if args.quick:
        ticks, repeats, conns_http = 20_000, 1, [8]
        max_seconds = 5.0
    else:
        ticks, repeats, conns_http = args.ticks, args.repeats, [int(x) for x in args.conns.split(",")]
        max_seconds = args.max_seconds
    symbols = 100
    tag = secrets.token_hex(3)
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick, "ticks": ticks,
                     "repeats": repeats, "symbols": symbols, "request_size": REQUEST_SIZE, "copy_batch": COPY_BATCH,
                     "generator": "python asyncio raw HTTP/1.1 keep-alive, request bytes prebuilt (orjson)",
                     "scenarios": {}}
    plan: list[tuple[str, str, dict]] = [("copy_1w", "copy", {"writers": 1}), ("copy_4w", "copy", {"writers": 4})]
    plan += [(f"http_k{k}", "http", {"conns": k}) for k in conns_http]
    plan += [("inproc_k8", "inproc", {"conns": 8}), ("naive_k8", "naive", {"conns": 8})]
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in plan}
    with temp_database(args.admin_dsn) as dsn:
        log(f"database {urlsplit(dsn).path[1:]}; {ticks:,} ticks x {repeats} runs per figure, {symbols} symbols")
        results["machine"] = pg_machine_facts(dsn)
        sql(dsn, "CREATE TABLE copy_ticks (idempotency_key text, symbol text, price float8, ts float8, volume float8)",
            "CREATE TABLE naive_ticks (idempotency_key text PRIMARY KEY, symbol text NOT NULL, price float8 NOT NULL,"
            " ts float8 NOT NULL, volume float8 NOT NULL)")
        with Server(database_url=dsn, keep_log=True) as server:  # applies the migrations
            results["server_log"] = server.log_path
            # warm-up the server: every symbol actor, a pooled connection, prepared statements
            run_pg_worker("http", {"host": server.host, "port": server.port, "ticks": 2_000, "symbols": symbols,
                                   "prefix": f"{tag}-warm", "conns": 2, "max_seconds": 30})
            for rep in range(repeats):  # interleaved, so drift on a shared machine hits every scenario alike
                for name, kind, extra in plan:
                    base = {"ticks": ticks, "symbols": symbols, "prefix": f"{tag}-{name}-{rep}",
                            "max_seconds": max_seconds, **extra}
                    r = one_run(kind, base, dsn, server)
                    runs[name].append(r)
                    lat = r.get("latency", {})
                    log(f"  run {rep + 1} {name:<10} {r['rate']:>10,.0f} ticks/s"
                        + (f"  p50 {lat['p50_ms']:.1f} ms p99 {lat['p99_ms']:.1f} ms" if lat else "")
                        + (f"  db_count==acks {r['count_matches_acks']}" if "count_matches_acks" in r else "")
                        + (f"  flush avg {r['avg_flush_ticks']:,.0f} x{r['flush_lanes']} lanes"
                           if "flush_lanes" in r else "")
                        + f"  cpu {json.dumps({k: round(v, 2) for k, v in r['cpu'].items()})}"
                        + f"  us/tick {json.dumps({k: round(v, 2) for k, v in r['us_per_tick'].items()})}")
    copy_median = statistics.median(r["rate"] for r in runs["copy_1w"])
    for name, kind, extra in plan:
        s = _summary(runs[name])
        s.update(kind=kind, **extra)
        s["ratio_to_copy_1w"] = s["rate_median"] / copy_median
        results["scenarios"][name] = s
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
    ap.add_argument("--admin-dsn", default=ADMIN_DSN)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    results = orchestrate(args)
    results["wall_seconds"] = time.perf_counter() - started
    BENCH_RESULTS.mkdir(parents=True, exist_ok=True)
    path = BENCH_RESULTS / f"postgres-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"results: {path.relative_to(ROOT)}  ({results['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
