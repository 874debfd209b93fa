"""Scenario `memory`: resident memory after 1 hour of simulated trade time, by symbol count.

Each measurement is a fresh process (``python -m bench.memory _worker JSON``) running the engine
in-process (router -> symbol actors -> flusher -> memory store, as ``candlewick run`` builds it;
``Config()`` defaults, so the default retention: 2,000,000 raw ticks, 24 h of raw ticks, 7 days of
candles, 1 h lateness, 100,000 dedupe keys per symbol), with ``tune_gc()`` as the server calls it.
It feeds S symbols x ``--rate`` ticks/s per symbol x ``--seconds`` of trade time: trade times spread
evenly over the last ``--seconds`` before now, symbols round-robin, requests of 1,000 ticks from 4
concurrent clients, keys like ``bench:M00042:1234567``. RSS is read from /proc/self/status after a
full ``gc.collect()``: before feeding (the engine idle), after feeding, and the peak (VmHWM).

Default rate 0.2 ticks/s per symbol (one trade every 5 s on average: 720 per symbol per hour,
7.2M ticks at 10,000 symbols) -- a broad universe where most symbols trade thinly; a hot crypto
pair trades 10-100x more, but then there are fewer of them. Everything is a parameter.

Run: ``python -m bench memory [--quick] [--runs N] [--symbols 1000,10000] [--rate 0.2] [--seconds 3600]
[--tracemalloc N] [--lateness S] [--max-keys N]`` (N: also list the N source lines holding the most
memory; ``--lateness``/``--max-keys`` change the dedupe horizon from the default, to show its cost).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time

from bench._results import fmt_summary, handle_termination, log, print_table, summary, write_result
from bench._worker import run_worker
from candlewick.runtime import pid_rss_bytes

MB = 1024 * 1024


def worker(p: dict) -> dict:
    import logging

    import attrs
    import trio

    from candlewick.config import Config
    from candlewick.engine import Engine
    from candlewick.logs import configure_logging
    from candlewick.runtime import tune_gc, tune_malloc
    from candlewick.schema import Tick

    configure_logging(level=logging.WARNING)  # stdout carries the one JSON line
    tune_gc()
    tune_malloc()
    symbols = [f"M{i:05d}" for i in range(p["symbols"])]
    n = int(round(p["symbols"] * p["rate"] * p["seconds"]))
    end = time.time() - 1.0
    start = end - p["seconds"] + 2.0  # inside the default 1 h lateness horizon throughout
    step = (end - start) / max(1, n - 1)
    nsym = len(symbols)
    out: dict = {"ticks": n}

    def chunks():
        for lo in range(0, n, 1000):
            yield [Tick(f"bench:{symbols[i % nsym]}:{i}", symbols[i % nsym], 100.0 + (i * 7919 % 10_000) / 100,
                        start + i * step, 0.5) for i in range(lo, min(n, lo + 1000))]

    async def main() -> None:
        extra = {k: p[k] for k in ("lateness", "dedupe_max_keys") if p.get(k) is not None}
        engine = Engine(Config(feeder=False, api_keys=("x",), **extra))
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            gc.collect()
            out["rss_idle"] = pid_rss_bytes()["VmRSS"]
            it = chunks()
            accepted = 0
            if p.get("trace"):
                import tracemalloc
                tracemalloc.start(1)
            t0 = time.perf_counter()

            async def client() -> None:
                nonlocal accepted
                for chunk in it:
                    receipt = await engine.submit(chunk)  # not `accepted += await ...`: that reads
                    accepted += receipt.accepted          # `accepted` before the await and loses updates

            async with trio.open_nursery() as load:
                for _ in range(4):
                    load.start_soon(client)
            out["feed_seconds"] = time.perf_counter() - t0
            out["accepted"] = accepted
            gc.collect()
            rss = pid_rss_bytes()
            out["rss_after"] = rss["VmRSS"]
            out["rss_peak"] = rss["VmHWM"]
            stats = engine.store.statistics()  # a dict, or an attrs MemoryStoreStatistics
            out["store"] = stats if isinstance(stats, dict) else attrs.asdict(stats)
            out["actors"] = len(engine.router.slots)
            out["gc_objects"] = len(gc.get_objects())
            if p.get("trace"):
                snap = tracemalloc.take_snapshot()
                tracemalloc.stop()
                top = snap.statistics("lineno")
                out["trace_total"] = sum(st.size for st in top)
                out["trace_top"] = [[f"{st.traceback[0].filename.rsplit('/', 2)[-1]}:{st.traceback[0].lineno}",
                                     st.size, st.count] for st in top[:p["trace"]]]
            engine.stop()

    trio.run(main)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:  # _worker memory JSON (run_worker)
        print(json.dumps(worker(json.loads(argv[-1]))), flush=True)
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny: 100 and 1,000 symbols, 5 minutes of trade time")
    ap.add_argument("--runs", type=int, default=None, help="runs per figure (default 3; quick 1)")
    ap.add_argument("--symbols", default=None, help="symbol counts (default 1000,10000; quick 100,1000)")
    ap.add_argument("--rate", type=float, default=0.2, help="ticks/s per symbol (default 0.2)")
    ap.add_argument("--seconds", type=float, default=None, help="simulated trade time (default 3600; quick 300)")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="N",
                    help="also trace allocations while feeding and list the N source lines holding the most "
                         "memory after it (where the RSS goes; feeding is several times slower)")
    ap.add_argument("--lateness", type=float, default=None, metavar="S",
                    help="the dedupe horizon in seconds (default: Config's, 3600): what remembering keys costs")
    ap.add_argument("--max-keys", type=int, default=None, metavar="N",
                    help="dedupe keys remembered per symbol at most (default: Config's, 100,000)")
    args = ap.parse_args(argv)
    handle_termination()
    started = time.perf_counter()
    runs = args.runs or (1 if args.quick else 3)
    counts = [int(x) for x in (args.symbols or ("100,1000" if args.quick else "1000,10000")).split(",")]
    seconds = args.seconds or (300.0 if args.quick else 3600.0)
    log(f"memory: {counts} symbols x {args.rate:g} ticks/s x {seconds:g} s of trade time, in-process engine "
        f"(memory store, default retention), fresh process per run, {runs} run(s)")
    results = []
    for s in counts:
        rs = []
        for r in range(runs):
            o = run_worker("memory", {"symbols": s, "rate": args.rate, "seconds": seconds,
                                      "trace": args.tracemalloc, "lateness": args.lateness,
                                      "dedupe_max_keys": args.max_keys}, timeout=3600, module="bench.memory")
            if o["accepted"] != o["ticks"]:
                log(f"  WARNING: {o['accepted']:,} of {o['ticks']:,} ticks accepted")
            log(f"  {s} symbols run {r + 1}: {o['ticks']:,} ticks in {o['feed_seconds']:.1f} s "
                f"({o['ticks'] / o['feed_seconds']:,.0f} ticks/s); RSS idle "
                f"{o['rss_idle'] / MB:.0f} MB, after {o['rss_after'] / MB:.0f} MB, peak {o['rss_peak'] / MB:.0f} MB; "
                f"store {o['store']}")
            if o.get("trace_top"):
                log(f"    traced {o['trace_total'] / MB:,.0f} MB live; by source line (MB, blocks, bytes/block):")
                for where, size, n in o["trace_top"]:
                    log(f"    {size / MB:9,.1f}  {n:>10,}  {size / max(1, n):6.0f}  {where}")
            rs.append(o)
        results.append({"symbols": s, "ticks": rs[0]["ticks"],
                        "rss_after_mb": summary([o["rss_after"] / MB for o in rs]),
                        "rss_peak_mb": summary([o["rss_peak"] / MB for o in rs]),
                        "rss_idle_mb": summary([o["rss_idle"] / MB for o in rs]),
                        "growth_bytes_per_tick": summary([(o["rss_after"] - o["rss_idle"]) / max(1, o["ticks"])
                                                          for o in rs]),
                        "runs": rs})
    rows = [[f"memory {res['symbols']:,} symbols", f"{res['ticks']:,}", fmt_summary(res["rss_idle_mb"], ",.0f"),
             fmt_summary(res["rss_after_mb"], ",.0f"), fmt_summary(res["rss_peak_mb"], ",.0f"),
             fmt_summary(res["growth_bytes_per_tick"], ",.0f")] for res in results]
    print_table(["scenario", "ticks fed", "RSS idle MB", "RSS after MB", "peak MB", "bytes/tick"], rows)
    write_result("memory", {"how": "in-process engine in a fresh process per run; RSS from /proc/self/status",
                            "rate_per_symbol": args.rate, "seconds": seconds, "runs": runs,
                            "retention": "Config() defaults", "lateness": args.lateness,
                            "dedupe_max_keys": args.max_keys, "results": results}, quick=args.quick,
                 started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
