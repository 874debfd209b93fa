"""Scenario `reads`: read latency under ingest load, memory store and Postgres store.

For each store, one server (``python -m candlewick run --no-feeder``; with ``DATABASE_URL`` on a
fresh database ``cw_bench_reads_<hex>`` on ``--admin-dsn``, dropped afterwards), prefilled with
4 hours of trades for S symbols (so ``limit=200`` candle pages are full). Then each run:
the Python generator posts ``--ingest-rate`` ticks/s (batches of 1,000 over the same S symbols,
paced) while a reader process times, from 2 keep-alive connections, back to back, alternating:

- ``GET /api/v1/ticks/{symbol}/history?view=ohlc1m&limit=200`` (candles with SMA10)
- ``GET /api/v1/ticks/{symbol}`` (the latest tick)

over random symbols for ``--duration`` s. Postgres is skipped, saying why, when the admin DSN
does not answer.

Run: ``python -m bench reads [--quick] [--runs N] [--stores memory,postgres]``.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import time

from bench._load import symbol_names
from bench._pg import ADMIN_DSN, postgres_available, temp_database
from bench._results import fmt_summary, handle_termination, log, print_table, summary, write_result
from bench._server import Server
from bench._worker import Worker, run_worker

PATHS = {"ohlc1m_limit200": "/api/v1/ticks/{sym}/history?view=ohlc1m&limit=200",
         "latest_tick": "/api/v1/ticks/{sym}"}


def prefill(server: Server, symbols: list[str], minutes: int, per_minute: int, tag: str) -> int:
    """``minutes`` of history ending a minute ago, ``per_minute`` trades per symbol per minute, in time order."""
    end = time.time() - 60
    start = end - minutes * 60
    n_per = minutes * per_minute
    items = []
    accepted = 0
    for j in range(n_per):
        ts = start + j * 60 / per_minute
        for s in symbols:
            items.append({"idempotencyKey": f"{tag}-pre-{s}-{j}", "symbol": s, "price": 100 + (j % 97) / 10,
                          "ts": round(ts, 3), "volume": 1.0})
            if len(items) == 1000:
                accepted += server.post_ticks(items)["accepted"]
                items = []
    if items:
        accepted += server.post_ticks(items)["accepted"]
    return accepted


def measure_store(store: str, dsn: str | None, *, runs: int, duration: float, ingest_rate: float, nsym: int,
                  minutes: int, per_minute: int, tag: str) -> dict:
    symbols = symbol_names(nsym)
    with Server(database_url=dsn) as server:
        t = time.perf_counter()
        pre = prefill(server, symbols, minutes, per_minute, tag)
        log(f"  {store}: prefilled {pre:,} ticks ({nsym} symbols x {minutes} min) in {time.perf_counter() - t:.1f} s")
        rs = []
        for r in range(runs):
            with Worker("gen", {"host": server.host, "port": server.port, "conns": 2, "batch": 1000,
                                "symbols": nsym, "prefix": f"{tag}-load-{r}", "rate": ingest_rate,
                                "duration": duration + 0.6, "server_pid": server.pid}) as gen:
                time.sleep(0.3)  # ingest under way before the first read
                rd = run_worker("read", {"host": server.host, "port": server.port, "conns": 2, "duration": duration,
                                         "symbols": symbols, "paths": PATHS, "seed": r})
                g = gen.result(timeout=duration + 120)
            bad = {k: v for k, v in rd["statuses"].items() if k != "200"}
            ohlc, latest = rd["latency"]["ohlc1m_limit200"], rd["latency"]["latest_tick"]
            log(f"  {store} run {r + 1}: ohlc1m p50 {ohlc.get('p50_ms', 0):.2f} p99 {ohlc.get('p99_ms', 0):.2f} ms, "
                f"latest p50 {latest.get('p50_ms', 0):.2f} p99 {latest.get('p99_ms', 0):.2f} ms; "
                f"{rd['requests_per_s']:,.0f} reads/s; ingest "
                f"{g['rate']:,.0f} of {ingest_rate:,.0f} ticks/s (server {g['cpu'].get('server_cores')} cores)"
                + (f"; non-200: {bad}" if bad else ""))
            rs.append({"read": rd, "ingest": g, "non_200": bad})
    out = {"store": store, "prefill_ticks": pre, "ingest_target": ingest_rate,
           "ingest_ticks_per_s": summary([o["ingest"]["rate"] for o in rs]),
           "reads_per_s": summary([o["read"]["requests_per_s"] for o in rs]), "runs": rs}
    for label in PATHS:
        out[f"{label}_p50_ms"] = summary([o["read"]["latency"][label].get("p50_ms") for o in rs])
        out[f"{label}_p99_ms"] = summary([o["read"]["latency"][label].get("p99_ms") for o in rs])
    out["ok"] = not any(o["non_200"] for o in rs)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench reads", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny: 20 symbols, 1 run of 1 s per store")
    ap.add_argument("--runs", type=int, default=None, help="runs per figure (default 3; quick 1)")
    ap.add_argument("--duration", type=float, default=None, help="seconds of reads per run (default 10; quick 1)")
    ap.add_argument("--stores", default="memory,postgres")
    ap.add_argument("--symbols", type=int, default=None, help="symbols (default 100; quick 20)")
    ap.add_argument("--ingest-rate", type=float, default=None,
                    help="ticks/s posted during the reads (default 20,000 memory / 10,000 Postgres; quick 5,000)")
    ap.add_argument("--admin-dsn", default=ADMIN_DSN)
    args = ap.parse_args(argv)
    handle_termination()
    started = time.perf_counter()
    runs = args.runs or (1 if args.quick else 3)
    duration = args.duration or (1.0 if args.quick else 10.0)
    nsym = args.symbols or (20 if args.quick else 100)
    minutes, per_minute = (215, 1) if args.quick else (240, 4)
    tag = secrets.token_hex(3)
    results, skipped = [], {}
    for store in args.stores.split(","):
        rate = args.ingest_rate or (5_000.0 if args.quick else (20_000.0 if store == "memory" else 10_000.0))
        log(f"reads/{store}: {nsym} symbols, ingest {rate:,.0f} ticks/s, {runs} run(s) x {duration:g} s")
        kw = dict(runs=runs, duration=duration, ingest_rate=rate, nsym=nsym, minutes=minutes, per_minute=per_minute,
                  tag=f"{tag}-{store}")
        if store == "memory":
            results.append(measure_store("memory", None, **kw))
        elif store == "postgres":
            why = postgres_available(args.admin_dsn)
            if why:
                log(f"reads/postgres SKIPPED: {why}")
                skipped["postgres"] = why
                continue
            with temp_database(args.admin_dsn, prefix="cw_bench_reads") as dsn:
                results.append(measure_store("postgres", dsn, **kw))
        else:
            raise SystemExit(f"unknown store {store}")
    rows = []
    for res in results:
        rows.append([f"reads {res['store']}", fmt_summary(res["ohlc1m_limit200_p50_ms"], ".2f"),
                     fmt_summary(res["ohlc1m_limit200_p99_ms"], ".2f"), fmt_summary(res["latest_tick_p50_ms"], ".2f"),
                     fmt_summary(res["latest_tick_p99_ms"], ".2f"), fmt_summary(res["ingest_ticks_per_s"]),
                     "yes" if res["ok"] else "NO"])
    for store in skipped:
        rows.append([f"reads {store}", "skipped", "-", "-", "-", "-", "-"])
    print_table(["scenario", "ohlc1m p50 ms", "ohlc1m p99 ms", "latest p50 ms", "latest p99 ms",
                 "ingest ticks/s", "all 200"], rows)
    write_result("reads", {"paths": PATHS, "symbols": nsym, "prefill_minutes": minutes,
                           "prefill_ticks_per_minute": per_minute, "reader_conns": 2, "duration": duration,
                           "runs": runs, "results": results, "skipped": skipped}, quick=args.quick, started=started)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
