"""Scenario `scaleout`: what Redis costs per tick, and the sharded deployment against one process.

In one run, interleaved per repeat, 100 symbols, batches of 1,000 ticks from K connections (the
raw HTTP generator of the postgres scenario, bench/_postgres_workers.py, in its own process):

- ``all``        one ``candlewick run`` with Postgres: durable ticks/s (202 after commit).
- ``all+redis``  the same process with ``REDIS_URL``: idempotency claims by script and the
                 fan-out over pub/sub on top. The difference in µs per tick is Redis's cost.
- ``sharded``    ``--role ingest`` + W ``--role worker`` processes: ticks/s end to end, from the
                 first request until Postgres holds every acknowledged tick.
- ``mem`` / ``mem+redis``  in-process ``Engine.submit`` with the memory store, without and with
                 Redis claims and fan-out: Redis's cost against the cheapest pipeline.
- ``claims``     the idempotency claims alone: every batch through ``RedisBus.claim`` (the one
                 script call per request ingest makes), K at a time; the CPU this process and
                 Redis spend per tick, against the ``all`` process's machine CPU per tick (the
                 fan-out, with its SSE outbox over Postgres, is what ``all+redis`` adds on top).

Run: ``python -m bench scaleout [--quick] [--runs N] [--workers W] [--ticks N] [--setups a,b]``. Results go to
``bench/results/scaleout-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import time

from bench._pg import ADMIN_DSN, sql, temp_database
from bench._postgres_workers import make_rows, run_pg_worker
from bench._proc import CpuMeter
from bench._results import BENCH_RESULTS, ROOT, summary
from bench._server import Server
from bench._worker import run_worker

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def _count(dsn: str) -> int:
    return sql(dsn, "SELECT count(*) FROM ticks_raw", fetch=True)


def _inproc_worker(p: dict) -> dict:
    """Engine.submit with the memory store from K trio tasks, with or without Redis claims."""
    import trio

    from candlewick.config import Config
    from candlewick.engine import Engine
    from candlewick.schema import Tick

    rows = make_rows(p["ticks"], p["symbols"], p["prefix"], time.time())
    batches = [[Tick(*r) for r in rows[i:i + 1000]] for i in range(0, len(rows), 1000)]
    out: dict = {}

    async def main() -> None:
        cfg = Config(feeder=False, api_keys=("x",), redis_url=p.get("redis_url"),
                     redis_prefix=p["prefix"] + ":", redis_channel=p["prefix"] + ":ch")
        eng = Engine(cfg)
        async with trio.open_nursery() as n:
            await n.start(eng.run)
            await eng.submit(batches[0])  # warm: actors exist
            it = iter(batches[1:])
            accepted = 0

            async def client() -> None:
                nonlocal accepted
                for b in it:
                    receipt = await eng.submit(b)  # (not `accepted += await ...`: that reads before awaiting)
                    accepted += receipt.accepted

            t = time.perf_counter()
            async with trio.open_nursery() as m:
                for _ in range(p["conns"]):
                    m.start_soon(client)
            out["elapsed"] = time.perf_counter() - t
            out["accepted"] = accepted
            out["rate"] = accepted / out["elapsed"]
            eng.stop()
            await eng.wait_stopped()

    async def claims_only() -> None:
        """The idempotency claims alone: each batch through ``RedisBus.claim`` (the one script call
        per request that ingest makes), K at a time; CPU of this process and of Redis per tick."""
        from candlewick.bus import RedisBus
        from candlewick.runtime import pid_cpu_seconds

        bus = RedisBus(p["redis_url"], prefix=p["prefix"] + ":")
        await bus.open()
        await bus.claim(batches[0])
        it = iter(batches[1:])
        fresh = 0

        async def client() -> None:
            nonlocal fresh
            for b in it:
                got = await bus.claim(b)
                fresh += sum(got)

        r0, c0, t = pid_cpu_seconds(p["redis_pid"]), time.process_time(), time.perf_counter()
        async with trio.open_nursery() as m:
            for _ in range(p["conns"]):
                m.start_soon(client)
        out["elapsed"] = time.perf_counter() - t
        n = sum(len(b) for b in batches[1:])
        out["accepted"] = fresh
        out["rate"] = n / out["elapsed"]
        out["cpu_us_per_tick"] = {"claimer": (time.process_time() - c0) * 1e6 / n,
                                  "redis": (pid_cpu_seconds(p["redis_pid"]) - r0) * 1e6 / n}
        await bus.close()

    if p.get("redis_url"):
        import trio_asyncio

        async def wrapped() -> None:
            async with trio_asyncio.open_loop():
                await (claims_only() if p.get("claims_only") else main())
        trio.run(wrapped)
        _cleanup_redis(p["prefix"], p["redis_url"])
    else:
        trio.run(main)
    return out


def durable_run(name: str, base: dict, dsn: str, workers: int) -> dict:
    """One run of ``all``, ``all+redis`` or ``sharded``: its processes started on emptied tables,
    warmed up, loaded by the raw HTTP generator until Postgres holds every acknowledged tick, and
    stopped."""
    prefix = base["prefix"]
    sql(dsn, "TRUNCATE ticks_raw, ohlc_1m, ohlc_rollups", "CHECKPOINT")
    env = {"REDIS_PREFIX": prefix + ":", "REDIS_CHANNEL": prefix + ":ch"}
    with contextlib.ExitStack() as stack:
        def start(env: dict[str, str], *args: str) -> Server:
            return stack.enter_context(Server(database_url=dsn, env=env, args=args))

        if name == "all":
            procs = [start(env)]
        elif name == "all+redis":
            procs = [start({**env, "REDIS_URL": REDIS_URL})]
        else:
            env = {**env, "REDIS_URL": REDIS_URL, "SHARDS": "8"}
            procs = [start(env, "--role", "worker") for _ in range(workers)]
            procs.append(start(env, "--role", "ingest"))
        front = procs[-1]
        run_pg_worker("http", {**base, "ticks": 2_000, "prefix": prefix + "w", "host": front.host,
                               "port": front.port})  # warm-up: actors, connections
        deadline = time.monotonic() + 60
        while _count(dsn) < 2_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        start_count = _count(dsn)
        pids = {"redis": _redis_pid()} if name != "all" else {}
        pids.update({("front" if p is front else f"worker{i}"): p.pid for i, p in enumerate(procs)})
        meter = CpuMeter(postgres=True, ndigits=None, **pids).start()
        t = time.perf_counter()
        r = run_pg_worker("http", {**base, "host": front.host, "port": front.port})
        while _count(dsn) - start_count < r["accepted"] and time.perf_counter() - t < 600:
            time.sleep(0.02)
        r["end_to_end_s"] = time.perf_counter() - t
        cpu = meter.stop()
        r["stored"] = _count(dsn) - start_count
    # CPU µs spent per stored tick by each part: what a machine of its own would need
    r["cpu_us_per_tick"] = {k[:-6]: v * r["end_to_end_s"] / max(1, r["stored"]) * 1e6
                            for k, v in cpu.items() if k.endswith("_cores")}
    r["e2e_rate"] = r["stored"] / r["end_to_end_s"]
    r["count_matches_acks"] = r["stored"] == r["accepted"]
    _cleanup_redis(prefix)
    return r


def orchestrate(args: argparse.Namespace) -> dict:
    ticks = args.ticks or (20_000 if args.quick else 200_000)
    repeats = 1 if args.quick else args.runs
    symbols, conns = 100, 8
    tag = secrets.token_hex(3)
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick, "ticks": ticks,
                     "symbols": symbols, "conns": conns, "workers": args.workers, "cores": os.cpu_count(),
                     "python": sys.version.split()[0], "runs": {}}
    runs: dict[str, list[dict]] = {k: [] for k in ("all", "all+redis", "sharded", "mem", "mem+redis", "claims")
                                   if k in args.setups.split(",")}
    with temp_database(ADMIN_DSN, prefix="cw_bench_scale") as dsn:
        subprocess.run([sys.executable, "-m", "candlewick", "migrate"], cwd=ROOT, check=True, capture_output=True,
                       env={**os.environ, "DATABASE_URL": dsn})
        for rep in range(repeats):
            for name in runs:
                prefix = f"b{tag}{rep}{name.replace('+', '')}"
                base = {"ticks": ticks, "symbols": symbols, "prefix": prefix, "conns": conns, "max_seconds": 600}
                if name == "claims":
                    r = _run_worker_here({**base, "redis_url": REDIS_URL, "claims_only": True,
                                          "redis_pid": _redis_pid()})
                elif name.startswith("mem"):
                    r = _run_worker_here({**base, "redis_url": REDIS_URL if name == "mem+redis" else None})
                else:
                    r = durable_run(name, base, dsn, args.workers)
                runs[name].append(r)
    for name, rs in runs.items():
        key = "rate" if name.startswith("mem") or name == "claims" else "e2e_rate"
        results["runs"][name] = {"ticks_per_s": summary([r[key] for r in rs]),
                                 "us_per_tick": summary([1e6 / r[key] for r in rs]),
                                 "counts_match": all(r.get("count_matches_acks", True) for r in rs),
                                 "latency_p50_ms": summary([r["latency"]["p50_ms"] for r in rs])
                                 if "latency" in rs[0] else None,
                                 "latency_p99_ms": summary([r["latency"]["p99_ms"] for r in rs])
                                 if "latency" in rs[0] else None,
                                 "cpu_us_per_tick": {k: statistics.median(r["cpu_us_per_tick"][k] for r in rs)
                                                     for k in rs[0].get("cpu_us_per_tick", {})}}
    R = results["runs"]
    if "claims" in R and "all" in R:  # the idempotency claims alone, against the single process's CPU per tick
        claim_us = sum(R["claims"]["cpu_us_per_tick"].values())
        single_us = R["all"]["cpu_us_per_tick"]["machine_busy"]
        results["idempotency_cost"] = {"cpu_us_per_tick": claim_us, "all_machine_cpu_us_per_tick": single_us,
                                       "share_of_single_process": claim_us / single_us}
    if not {"all", "all+redis", "sharded", "mem", "mem+redis"} <= set(R):  # the ratios need all five
        return results
    results["redis_cost"] = {
        "http_durable_us": R["all+redis"]["us_per_tick"]["median"] - R["all"]["us_per_tick"]["median"],
        "http_durable_ratio": R["all+redis"]["us_per_tick"]["median"] / R["all"]["us_per_tick"]["median"],
        "inproc_memory_us": R["mem+redis"]["us_per_tick"]["median"] - R["mem"]["us_per_tick"]["median"],
        "inproc_memory_ratio": R["mem+redis"]["us_per_tick"]["median"] / R["mem"]["us_per_tick"]["median"],
    }
    results["sharded_vs_all"] = R["sharded"]["ticks_per_s"]["median"] / R["all"]["ticks_per_s"]["median"]
    return results


def _run_worker_here(p: dict) -> dict:
    """``_inproc_worker`` in its own process (``python -m bench.scaleout _worker inproc JSON``)."""
    return run_worker("inproc", p, timeout=600, module="bench.scaleout")


def _redis_pid() -> int:
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    try:
        return int(r.info("server")["process_id"])
    finally:
        r.close()


def _cleanup_redis(prefix: str, url: str = REDIS_URL) -> None:
    """Delete every key under ``prefix:``."""
    import redis

    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(match=prefix + ":*", count=5000))
    for i in range(0, len(keys), 5000):
        r.delete(*keys[i:i + 5000])
    r.close()


def print_table(res: dict) -> None:
    print(f"\nscaleout: {res['ticks']:,} ticks, {res['symbols']} symbols, K={res['conns']}, "
          f"{res['workers']} workers, {res['cores']} cores")
    print(f"{'setup':<11} {'ticks/s (median, min-max)':>32} {'µs/tick':>8} {'ack p50 ms':>11} {'ack p99 ms':>11}")
    for name, r in res["runs"].items():
        t = r["ticks_per_s"]
        p50 = f"{r['latency_p50_ms']['median']:.1f}" if r["latency_p50_ms"] else "-"
        p99 = f"{r['latency_p99_ms']['median']:.1f}" if r["latency_p99_ms"] else "-"
        print(f"{name:<11} {t['median']:>12,.0f} ({t['min']:,.0f}-{t['max']:,.0f}) "
              f"{r['us_per_tick']['median']:>8.2f} {p50:>11} {p99:>11}")
    for name, r in res["runs"].items():
        if r["cpu_us_per_tick"]:
            parts = ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_us_per_tick"].items())
            print(f"  CPU µs per tick, {name}: {parts}")
    if "redis_cost" in res:
        c = res["redis_cost"]
        print(f"Redis idempotency+fan-out: +{c['http_durable_us']:.2f} µs/tick durable HTTP "
              f"({c['http_durable_ratio']:.2f}x), +{c['inproc_memory_us']:.2f} µs/tick in-process memory "
              f"({c['inproc_memory_ratio']:.2f}x); sharded / all = {res['sharded_vs_all']:.2f}")
    if "idempotency_cost" in res:
        i = res["idempotency_cost"]
        print(f"Redis idempotency alone (claims): {i['cpu_us_per_tick']:.2f} µs CPU per tick (this process + Redis) "
              f"= {i['share_of_single_process']:.0%} of the single all process's {i['all_machine_cpu_us_per_tick']:.1f} "
              f"µs CPU per tick")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:  # _worker inproc JSON (run_worker)
        print(json.dumps(_inproc_worker(json.loads(argv[-1]))))
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench scaleout")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ticks", type=int, default=None, help="ticks per run (default 200,000; quick 20,000)")
    ap.add_argument("--setups", default="all,all+redis,sharded,mem,mem+redis,claims",
                    help="which setups to run, comma separated (default: all six)")
    args = ap.parse_args(argv)
    res = orchestrate(args)
    BENCH_RESULTS.mkdir(exist_ok=True)
    out = BENCH_RESULTS / f"scaleout-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(res, indent=2, default=str))
    print_table(res)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
