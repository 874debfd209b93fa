"""Scenario `engine`: ticks/s from request body to commit in the memory store, in process.

Each request is a JSON body of 1,000 ticks, decoded by the webhook's decoder, then submitted through
router -> symbol actors -> flusher -> memory store. Its yardstick, measured in the same run on the
same bodies: ``orjson.loads`` alone (parsing, no validation, no work).

Beside it, the bare loop: the same book work (dedupe, bars, SMA, as the dispatcher applies a pass
to its ``BookTable``) and store writes over the same requests (1,000 ticks spread over the symbols,
as columns) in one plain Python loop, no channels or tasks: what this code costs in CPython a
request at a time (the engine's dispatcher joins the requests waiting into one pass, so with few
symbols it can beat this loop). Also shown, the bare loop over the whole list at once (every symbol's ticks in one batch), a
ceiling no request-at-a-time server can reach.
"""

from __future__ import annotations

import gc
import random
import statistics
import time

import numpy as np
import orjson
import trio

from candlewick.config import Config
from candlewick.domain import BookTable, apply_isolated
from candlewick.engine import Engine
from candlewick.runtime import tune_gc, tune_malloc
from candlewick.schema import Tick, TickColumns, decode_tick_columns
from candlewick.storage import MemoryStore

T0 = 1_730_425_200.0
clock = time.perf_counter
"""What runs are timed by: the wall clock, or with ``--cpu`` this process's CPU time (on a shared
machine; both sides here are one thread that never waits on I/O, so on an idle machine the two agree)."""


def make_ticks(n: int, symbols: int, seed: int = 7) -> list[Tick]:
    rng = random.Random(seed)
    names = [f"SYM{i:05d}" for i in range(symbols)]
    return [Tick(f"k{i}", names[rng.randrange(symbols)], 100.0 + rng.random(), T0 + i * 0.001, 1.0)
            for i in range(n)]


def bare_loop(ticks: list[Tick], request_size: int | None = 1000) -> float:
    """The engine's work without the engine: for each request (``request_size`` ticks, as the
    engine gets them: decoded to columns, digests only), map its symbols to their rows, apply it
    to the book table as a dispatcher's pass does (dedupe, bars, SMA, the events' columns), write
    the new ticks' columns to a memory store; in one plain loop, no channels, tasks, tickets or
    broadcaster. ``request_size=None`` takes the whole list as one request: the most batching this
    code can ever see, a ceiling no request-at-a-time server reaches at many symbols."""
    table = BookTable()
    row_of = {s: table.add(s) for s in sorted({t.symbol for t in ticks})}  # the engine's actors exist too
    store = MemoryStore(max_raw_ticks=len(ticks) + 1)
    size = request_size or len(ticks)
    requests = []
    for i in range(0, len(ticks), size):
        cols = TickColumns.from_ticks(ticks[i:i + size])
        cols.keys = None  # as the decoder gives them: the keys' digests only
        requests.append(cols)
    gc.collect()  # as after the engine's warm-up
    started = clock()
    for cols in requests:
        rows = np.array([row_of[s] for s in cols.symbols], dtype=np.int32)[cols.sym]
        outcome = apply_isolated(table, rows, cols.price, cols.ts, cols.volume, cols.digest)
        store.write_now(cols.take(outcome.new))
    return len(ticks) / (clock() - started)


def make_bodies(ticks: list[Tick], request_size: int) -> list[bytes]:
    """The ticks as webhook bodies of ``request_size`` ticks, each with its client key."""
    return [orjson.dumps({"source": "bench", "items": [
        {"idempotencyKey": t.key, "symbol": t.symbol, "price": t.price, "ts": t.ts, "volume": t.volume}
        for t in ticks[i:i + request_size]]}) for i in range(0, len(ticks), request_size)]


def loads_rate(bodies: list[bytes], n: int) -> float:
    """Ticks/s of ``orjson.loads`` alone over the bodies: the yardstick."""
    started = clock()
    for body in bodies:
        orjson.loads(body)
    return n / (clock() - started)


async def _engine_run(ticks: list[Tick], request_size: int, clients: int) -> float:
    config = Config(feeder=False, api_keys=("x",), max_in_flight_ticks=max(200_000, request_size * clients),
                    retention_raw_ticks=len(ticks) + 1, flusher_capacity=1024, sse_replay=1000)
    engine = Engine(config)
    bodies = make_bodies(ticks, request_size)
    now = T0 + len(ticks)  # the decoder's "now": every trade time is in the past
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        # warm-up: create every actor first so the timing is steady state
        symbols = sorted({t.symbol for t in ticks})
        for i in range(0, len(symbols), 10_000):  # as requests can hold them (10,000 ticks at most)
            await engine.submit([Tick(f"w{s}", s, 1.0, T0 - 1, 0.0) for s in symbols[i:i + 10_000]])
        gc.collect()  # what warm-up made is old now, as in a server that has run a while
        started = clock()

        async def client(k: int) -> None:
            for body in bodies[k::clients]:
                _, decoded = decode_tick_columns(body, now)
                await engine.submit(decoded)

        async with trio.open_nursery() as load:
            for k in range(clients):
                load.start_soon(client, k)
        elapsed = clock() - started
        engine.stop()
    return len(ticks) / elapsed


def engine_rate(ticks: list[Tick], request_size: int = 1000, clients: int = 8) -> float:
    return trio.run(_engine_run, ticks, request_size, clients)


def run(symbol_counts=(10, 100, 1000, 10_000), n: int = 200_000, repeats: int = 3) -> list[dict]:
    rows = []
    for symbols in symbol_counts:
        ticks = make_ticks(n, symbols)
        bodies = make_bodies(ticks, 1000)
        eng, bare, whole, loads = [], [], [], []
        for _ in range(repeats):
            loads.append(loads_rate(bodies, n))
            bare.append(bare_loop(ticks))
            whole.append(bare_loop(ticks, None))
            eng.append(engine_rate(ticks))
        rows.append({"symbols": symbols, "ticks": n, "engine_median": statistics.median(eng),
                     "loads_median": statistics.median(loads), "loads_runs": loads,
                     "ratio_loads": statistics.median(eng) / statistics.median(loads),
                     "engine_min": min(eng), "engine_max": max(eng), "bare_median": statistics.median(bare),
                     "bare_min": min(bare), "bare_max": max(bare), "engine_runs": eng, "bare_runs": bare,
                     "bare_whole_median": statistics.median(whole), "bare_whole_runs": whole,
                     "ratio_whole": statistics.median(eng) / statistics.median(whole),
                     "ratio": statistics.median(eng) / statistics.median(bare)})
    return rows


if __name__ == "__main__":
    import argparse
    import logging

    from bench._results import write_result
    from candlewick.logs import configure_logging

    configure_logging(level=logging.WARNING)  # the engine's lifecycle logs would interleave the table

    ap = argparse.ArgumentParser(prog="python -m bench engine", description=__doc__.split("\n\n")[0])
    ap.add_argument("symbols", nargs="*", type=int, help="symbol counts (default 10 100 1000 10000; quick 10 100 1000)")
    ap.add_argument("--quick", action="store_true", help="20,000 ticks per run, no 10,000-symbol row")
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    ap.add_argument("--ticks", type=int, default=None, help="ticks per run (default 200,000; quick 20,000)")
    ap.add_argument("--cpu", action="store_true", help="time by CPU time, not wall clock (a busy shared machine)")
    args = ap.parse_args()
    if args.cpu:
        clock = time.process_time
    started = time.perf_counter()
    counts = tuple(args.symbols) or ((10, 100, 1000) if args.quick else (10, 100, 1000, 10_000))
    n = args.ticks or (20_000 if args.quick else 200_000)
    tune_gc()  # as `candlewick run` does
    tune_malloc()
    rows = run(counts, n=n, repeats=args.runs)
    print(f"{'symbols':>8} {'engine ticks/s (min-max)':>32} {'orjson.loads':>13} {'ratio':>6}"
          f" {'bare loop (min-max)':>32} {'ratio':>6} {'bare, whole list':>16} {'ratio':>6}")
    base = rows[0]["engine_median"] if rows else 0
    for r in rows:
        print(f"{r['symbols']:>8} {r['engine_median']:>12,.0f} ({r['engine_min']:,.0f}-{r['engine_max']:,.0f})"
              f" {r['loads_median']:>13,.0f} {r['ratio_loads']:>6.2f}"
              f" {r['bare_median']:>12,.0f} ({r.get('bare_min', 0):,.0f}-{r.get('bare_max', 0):,.0f})"
              f" {r['ratio']:>6.2f} {r['bare_whole_median']:>16,.0f} {r['ratio_whole']:>6.2f}")
    if len(rows) > 1:
        print("engine rate against the first row's: " + ", ".join(
            f"{r['symbols']} symbols {r['engine_median'] / base:.2f}" for r in rows[1:]))
    write_result("engine", {"ticks_per_run": n, "runs": args.runs, "request_size": 1000, "clients": 8,
                            "clock": "cpu" if args.cpu else "wall", "results": rows},
                 quick=args.quick, started=started)
