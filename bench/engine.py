"""Scenario `engine`: ticks/s through router -> symbol actors -> flusher -> memory store, in process.

Beside it, the bare loop: the same book arithmetic (dedupe, bars, SMA) over the same ticks in
one plain Python loop, no channels or tasks: the ceiling for this code in CPython.
"""

from __future__ import annotations

import random
import statistics
import time

import trio

from candlewick.engine import Config, Engine, MemoryStore, SymbolBook, tune_gc
from candlewick.schema import Tick

T0 = 1_730_425_200.0


def make_ticks(n: int, symbols: int, seed: int = 7) -> list[Tick]:
    rng = random.Random(seed)
    names = [f"SYM{i:05d}" for i in range(symbols)]
    return [Tick(f"k{i}", names[rng.randrange(symbols)], 100.0 + rng.random(), T0 + i * 0.001, 1.0)
            for i in range(n)]


def bare_loop(ticks: list[Tick]) -> float:
    books: dict[str, SymbolBook] = {}
    store = MemoryStore(max_raw_ticks=len(ticks) + 1)
    started = time.perf_counter()
    groups: dict[str, list[Tick]] = {}
    for t in ticks:
        groups.setdefault(t.symbol, []).append(t)
    for symbol, part in groups.items():
        book = books.get(symbol) or books.setdefault(symbol, SymbolBook(symbol))
        applied = book.apply(part)
        store.write_now({symbol: applied.new})
    return len(ticks) / (time.perf_counter() - started)


async def _engine_run(ticks: list[Tick], request_size: int, clients: int) -> float:
    config = Config(feeder=False, api_keys=("x",), max_in_flight_ticks=max(200_000, request_size * clients),
                    retention_raw_ticks=len(ticks) + 1, flusher_capacity=1024, sse_replay=1000)
    engine = Engine(config)
    chunks = [ticks[i:i + request_size] for i in range(0, len(ticks), request_size)]
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        # warm-up: create every actor first so the timing is steady state
        symbols = sorted({t.symbol for t in ticks})
        await engine.submit([Tick(f"w{s}", s, 1.0, T0 - 1, 0.0) for s in symbols])
        started = time.perf_counter()

        async def client(k: int) -> None:
            for chunk in chunks[k::clients]:
                await engine.submit(chunk)

        async with trio.open_nursery() as load:
            for k in range(clients):
                load.start_soon(client, k)
        elapsed = time.perf_counter() - started
        engine.stop()
    return len(ticks) / elapsed


def engine_rate(ticks: list[Tick], request_size: int = 1000, clients: int = 8) -> float:
    return trio.run(_engine_run, ticks, request_size, clients)


def run(symbol_counts=(10, 100, 1000, 10_000), n: int = 200_000, repeats: int = 3) -> list[dict]:
    rows = []
    for symbols in symbol_counts:
        ticks = make_ticks(n, symbols)
        eng, bare = [], []
        for _ in range(repeats):
            bare.append(bare_loop(ticks))
            eng.append(engine_rate(ticks))
        rows.append({"symbols": symbols, "ticks": n, "engine_median": statistics.median(eng),
                     "engine_min": min(eng), "engine_max": max(eng), "bare_median": statistics.median(bare),
                     "ratio": statistics.median(eng) / statistics.median(bare)})
    return rows


if __name__ == "__main__":
    import sys
    counts = tuple(int(x) for x in sys.argv[1:]) or (10, 100, 1000, 10_000)
    tune_gc()  # as `candlewick run` does
    print(f"{'symbols':>8} {'engine ticks/s (min-max)':>32} {'bare loop':>12} {'ratio':>6}")
    for r in run(counts):
        print(f"{r['symbols']:>8} {r['engine_median']:>12,.0f} ({r['engine_min']:,.0f}-{r['engine_max']:,.0f})"
              f" {r['bare_median']:>12,.0f} {r['ratio']:>6.2f}")
