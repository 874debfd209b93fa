"""Scenario `pgscale`: Postgres for months of data, the targets of issue 17.

Three parts, each on a database of its own (created on ``--admin-dsn``, dropped afterwards), each
against a real server (``python -m candlewick run --no-feeder`` with ``DATABASE_URL``), using only
the HTTP API, ``candlewick migrate`` and generic SQL (row counts, sizes, ``pg_stat`` views,
the catalogue), so it measures whatever schema the code under test has:

1. **ingest** (bench/_pgscale_ingest.py): sustained seed-style durable ingest, wrk posting batches
   of 1,000 ticks over 100 symbols with trade times random over the last hour, for ``--minutes``
   (10) in back-to-back slices of ``--slice`` s (60). Per slice: ticks/s acknowledged (202s) and
   rows/s stored (``n_tup_ins``), ack p50/p90/p99, CPU per tick of Postgres (every ``postgres``
   process, from /proc) and of the server. At the end: rows and bytes stored. Before it, a raw COPY
   of 1M rows into an unindexed table of the same database: the "durable / raw COPY" reference.
   Targets: last slice's rate >= 0.8x the first's, last p99 <= 2x the first's, more than 20M rows,
   Postgres <= 2.5 us per stored tick, durable >= 0.3x raw COPY.
2. **history** (bench/_pgscale_reads.py, bench/_pgscale_seed.py): ``--days`` (400) of 1-minute
   candles for one symbol (``candlewick import`` when the code has it, else SQL into the schema's
   candle and rollup tables), then the server's RSS while ``--concurrent`` (10) clients read
   ``interval=1d&limit=2000`` (target: +50 MB at most), then the median of ``--runs`` (7) reads of
   ``interval=1d&limit=400``, ``interval=1h&limit=2000`` and ``limit=2000`` (target: 50 ms each).
3. **retention** (bench/_pgscale_retention.py): when the raw table is time-partitioned and the
   configuration has the settings, a partition past retention must be gone within one maintenance
   period, and ingest p99 while it drops is compared with before; otherwise one line says why not.

Run: ``python -m bench pgscale [--quick] [--parts ingest,history,retention] [--minutes N] ...``;
``--quick`` (a few seconds per part, well under a minute in all) is what the test suite runs.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shutil
import time

from bench._pg import ADMIN_DSN, postgres_available
from bench._pgscale_ingest import run_ingest, summarize
from bench._pgscale_reads import PATHS, run_history
from bench._pgscale_retention import run_retention
from bench._results import handle_termination, log, print_table, write_result

PARTS = ("ingest", "history", "retention")
SPAN = 3540.0
"""Trade times are random over the last SPAN seconds: the last hour, less a minute's margin under the
server's one-hour lateness horizon (a tick an hour old would be skipped, not stored)."""


def _mark(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def _f(x, spec: str, suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def slice_rows(ingest: dict) -> list[list[str]]:
    rows = []
    for i, s in enumerate(ingest["slices"]):
        lat, us = s["latency"], s["us_per_tick"]
        rows.append([f"{i + 1}", f"{s['rate']:,.0f}", f"{s['rows_per_s']:,.0f}", f"{lat['p50_ms']:.0f}",
                     f"{lat['p90_ms']:.0f}", f"{lat['p99_ms']:.0f}", f"{lat['max_ms']:.0f}",
                     _f(us.get("postgres"), ".2f"), _f(us.get("server"), ".2f"), _f(s.get("rss_mb"), ",.0f"),
                     f"{s['skipped'] + s['bad_status'] + sum(s['wrk_errors'].values())}"])
    return rows


def target_rows(res: dict, min_rows: int) -> list[list[str]]:
    rows: list[list[str]] = []
    ing = res.get("ingest")
    if ing and "summary" in ing:
        m = ing["summary"]
        rows += [
            ["rows stored at the end", f"{m['rows']:,} ({m['bytes'] / 1e9:.2f} GB, {m['bytes_per_row']:.0f} B/row)",
             f"> {min_rows:,}", _mark(m["rows"] > min_rows)],
            ["ingest rate, last / first slice", f"{_f(m['rate_ratio'], '.2f')} ({m['last_rate']:,.0f} / "
             f"{m['first_rate']:,.0f} ticks/s)", ">= 0.8", _mark(m["rate_ratio"] is not None and m["rate_ratio"] >= 0.8)],
            ["ack p99, last / first slice", f"{_f(m['p99_ratio'], '.2f')} ({m['last_p99_ms']:.0f} / "
             f"{m['first_p99_ms']:.0f} ms)", "<= 2", _mark(m["p99_ratio"] is not None and m["p99_ratio"] <= 2)],
            ["Postgres CPU per stored tick", _f(m["postgres_us_per_tick"], ".2f", " us") +
             f" (server {_f(m['server_us_per_tick'], '.2f', ' us')})", "<= 2.5 us",
             _mark(m["postgres_us_per_tick"] is not None and m["postgres_us_per_tick"] <= 2.5)],
            ["durable via HTTP / raw COPY", f"{_f(m['of_copy'], '.2f')} ({m['mean_rate']:,.0f} / "
             f"{ing['copy']['rate']:,.0f} ticks/s)", ">= 0.3", _mark(m["of_copy"] is not None and m["of_copy"] >= 0.3)],
        ]
    elif ing:
        rows.append(["ingest", f"failed: {ing.get('error', '?')}", "", "NO"])
    hist = res.get("history")
    if hist and "reads" in hist:
        for label, r in hist["reads"].items():
            rows.append([f"read {r['path'].split('?', 1)[1]}", f"{r['median_ms']:.1f} ms median ({r['min_ms']:.1f}-"
                         f"{r['max_ms']:.1f}; cold {r['cold_ms']:.1f}), {r['items']} candles" +
                         ("" if r["ok"] else " WRONG"), "<= 50 ms", _mark(r["median_ms"] <= 50 and r["ok"])])
        c = hist["concurrent"]
        rows.append([f"{c['readers']} concurrent interval=1d&limit=2000", f"+{c['growth_mb']:.0f} MB RSS "
                     f"({c['rss_before_mb']:.0f} -> {c['rss_peak_mb']:.0f})" + ("" if c["ok"] else " WRONG"),
                     "<= 50 MB", _mark(c["growth_mb"] <= 50 and c["ok"])])
        seed = hist["seed"]
        if seed["method"] == "import" and ing and "copy" in ing:
            ratio = seed["trades_per_s"] / ing["copy"]["rate"]
            rows.append(["import (history file) / raw COPY", f"{ratio:.2f} ({seed['trades_per_s']:,.0f} trades/s, "
                         f"{seed['trades']:,} trades)", ">= 0.5 (10M trades)", _mark(ratio >= 0.5)])
        else:
            rows.append(["import / raw COPY", "not measured: " + (
                "no `candlewick import` on this code" if seed["method"] == "sql" else "no COPY reference this run"),
                ">= 0.5", "-"])
    elif hist:
        rows.append(["history reads", "not measured: " + hist.get("seed_failed", hist.get("error", "?")), "", "NO"])
    ret = res.get("retention")
    if ret is not None:
        if not ret.get("available"):
            rows.append(["retention: partition past it gone", "not available on this schema (below)", "", "-"])
        elif ret.get("gone"):
            rows.append(["retention: partition past it gone", f"after {ret['gone_after_s']:.1f} s (period "
                         f"{ret['maintenance_s']} s)", "<= 1 period", _mark(ret["within_one_period"])])
            rows.append(["ingest p99 while it drops / before", f"{ret['p99_vs_before']:.2f} ({ret['drop_slice_p99_ms']:.0f}"
                         f" ms vs {', '.join(f'{x:.0f}' for x in ret['before_p99_ms'])})", "no effect", "-"])
        else:
            rows.append(["retention: partition past it gone", "NOT gone" + (f": {ret['error']}" if "error" in ret else ""),
                         "<= 1 period", "NO"])
    return rows


def checks_ok(res: dict) -> bool:
    """Correctness, not speed: the counts add up and every read answered what it should."""
    ok = True
    if "ingest" in res:
        ok &= "error" not in res["ingest"] and all(c["ok"] for c in res["ingest"].get("checks", {}).values())
    if "history" in res:
        h = res["history"]
        ok &= "reads" in h and all(r["ok"] for r in h["reads"].values()) and h["concurrent"]["ok"]
    if "retention" in res:
        ok &= "error" not in res["retention"]
    return bool(ok)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench pgscale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny: 3 slices of 4 s, 3 days of history, 3 read runs")
    ap.add_argument("--parts", default=",".join(PARTS), help="parts to run, comma separated (default: all three)")
    ap.add_argument("--minutes", type=float, default=10.0, help="ingest length in minutes (default 10)")
    ap.add_argument("--slice", type=int, default=60, help="seconds per wrk slice, one latency window (default 60)")
    ap.add_argument("--conns", type=int, default=8, help="wrk connections (default 8)")
    ap.add_argument("--batch", type=int, default=1000, help="ticks per request (default 1,000)")
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--min-rows", type=int, default=20_000_000, help="rows the ingest should end above (a target)")
    ap.add_argument("--dedupe-max-keys", type=int, default=400_000,
                    help="DEDUPE_MAX_KEYS of the server: keys per symbol of the one-hour horizon (default 400,000, "
                         "enough for 10 minutes at 60,000 ticks/s over 100 symbols, so no tick is skipped)")
    ap.add_argument("--copy-ticks", type=int, default=1_000_000, help="rows of the raw COPY reference")
    ap.add_argument("--days", type=int, default=400, help="days of 1-minute history (default 400)")
    ap.add_argument("--runs", type=int, default=7, help="timed runs per read (default 7)")
    ap.add_argument("--concurrent", type=int, default=10, help="concurrent long reads (default 10)")
    ap.add_argument("--retention-slice", type=int, default=10, help="seconds per slice of the retention part")
    ap.add_argument("--maintenance", type=int, default=10, help="maintenance period given to the server (s)")
    ap.add_argument("--retention-rows", type=int, default=1_000_000, help="rows in the partition that is dropped")
    ap.add_argument("--admin-dsn", default=ADMIN_DSN)
    args = ap.parse_args(argv)
    handle_termination()
    started = time.perf_counter()
    parts = [p for p in args.parts.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        ap.error(f"unknown parts: {sorted(unknown)}")
    if args.quick:
        slices, slice_s, copy_ticks, days, runs = 3, 4, 20_000, 3, 3
        ret_slice, maintenance, ret_rows = 2, 2, 20_000
    else:
        slice_s = args.slice
        slices = max(2, round(args.minutes * 60 / slice_s))
        copy_ticks, days, runs = args.copy_ticks, args.days, args.runs
        ret_slice, maintenance, ret_rows = args.retention_slice, args.maintenance, args.retention_rows
    why = postgres_available(args.admin_dsn)
    if why:
        log(f"pgscale SKIPPED: {why}")
        write_result("pgscale", {"skipped": why}, quick=args.quick, started=started)
        return 0
    if not shutil.which("wrk"):
        raise SystemExit("pgscale needs wrk on PATH (Debian: apt-get install wrk)")
    tag = secrets.token_hex(3)
    load = dict(conns=args.conns, batch=args.batch, symbols=args.symbols, span=SPAN)
    res: dict = {"parts": parts, "paths": {k: v for k, v in PATHS.items()}}
    if "ingest" in parts:
        log(f"pgscale/ingest: {slices} slices x {slice_s} s, wrk {args.conns} connections, batches of {args.batch}, "
            f"{args.symbols} symbols, trade times random over the last {SPAN:g} s")
        try:
            res["ingest"] = run_ingest(args.admin_dsn, slices=slices, slice_seconds=slice_s, copy_ticks=copy_ticks,
                                       dedupe_max_keys=args.dedupe_max_keys, tag=tag, **load)
            res["ingest"]["summary"] = summarize(res["ingest"])
        except Exception as exc:  # noqa: BLE001 - reported, and the other parts still run
            log(f"pgscale/ingest FAILED: {exc}")
            res["ingest"] = {"error": str(exc)}
    if "history" in parts:
        log(f"pgscale/history: {days} days of 1-minute candles, {runs} timed runs per read, "
            f"{args.concurrent} concurrent long reads")
        try:
            res["history"] = run_history(args.admin_dsn, days=days, runs=runs, concurrent=args.concurrent)
        except Exception as exc:  # noqa: BLE001 - reported, and the other parts still run
            log(f"pgscale/history FAILED: {exc}")
            res["history"] = {"error": str(exc)}
    if "retention" in parts:
        log(f"pgscale/retention: slices of {ret_slice} s, maintenance every {maintenance} s")
        try:
            res["retention"] = run_retention(args.admin_dsn, slice_seconds=ret_slice, before=2 if args.quick else 3,
                                             maintenance_s=maintenance, rows=ret_rows, tag=tag, **load)
        except Exception as exc:  # noqa: BLE001 - reported, and the other parts still run
            log(f"pgscale/retention FAILED: {exc}")
            res["retention"] = {"available": True, "gone": False, "error": str(exc)}
        if not res["retention"].get("available"):
            log(f"pgscale/retention: not available on this schema: {res['retention']['why']}")
    if res.get("ingest", {}).get("slices"):
        print_table(["slice", "acked ticks/s", "stored rows/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "pg us/tick",
                     "server us/tick", "server MB", "skipped+bad"], slice_rows(res["ingest"]))
        print()
    print_table(["figure", "measured", "target", "met"], target_rows(res, args.min_rows))
    if "retention" in res and not res["retention"].get("available"):
        print(f"retention: not available on this schema: {res['retention']['why']}")
    if "ingest" in res and "summary" in res["ingest"]:
        print("us/tick: CPU microseconds per tick; pg: the postgres processes of this database and of none "
              "(checkpointer, WAL writer), not other databases' backends")
    res["checks_ok"] = checks_ok(res)
    write_result("pgscale", res, quick=args.quick, started=started)
    return 0 if res["checks_ok"] else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
