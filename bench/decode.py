"""Scenario `decode`: ticks/s decoding a 1,000-tick webhook body, by decoder, symbol count and key.

Bodies of 1,000 ticks over 100 and over 10,000 symbols (then every tick has its own symbol), with
the client's idempotency keys or without (then each key is the default text, three float reprs).
Decoders: ``orjson.loads`` alone (the yardstick: parsing, no checks, no columns);
``decode_tick_columns`` (what ingest uses: typed decode in C, numpy checks, symbol codes and key
digests); ``decode_ticks`` (the same, then one ``Tick`` per tick, for code not yet on columns); and
the item-by-item loop that a body the typed decoder refuses goes through (it names every problem;
on a valid body it builds the same columns). Each figure is the median of ``runs`` timings of
``loops`` decodes, timed in CPU seconds of the thread.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import orjson

from candlewick.schema import _decode, decode_tick_columns, decode_ticks

N = 1000
clock = time.thread_time
"""Decoding is one thread that never waits: its CPU time is its cost, also on a shared machine
(on an idle one, wall time agrees)."""
SHAPES = ((100, True), (100, False), (10_000, True), (10_000, False))
"""(symbols, client keys) of the bodies measured."""


def body(n: int = N, symbols: int = 100, keys: bool = True, now: float | None = None) -> bytes:
    """``n`` ticks over ``symbols`` symbols (round robin), with ``idempotencyKey`` or without."""
    now = time.time() if now is None else now
    return orjson.dumps({"source": "bench", "items": [
        {**({"idempotencyKey": f"k{i}"} if keys else {}), "symbol": f"S{i % symbols}", "price": 100.0 + i / 7,
         "ts": now - i / 1000, "volume": 0.5} for i in range(n)]})


def rate(fn: Callable[[bytes], object], raw: bytes, n: int, runs: int = 3, loops: int = 50) -> tuple[float, float, float]:
    """Ticks/s of ``fn(raw)``: (median, min, max) over ``runs`` timings of ``loops`` calls."""
    fn(raw)
    rates = []
    for _ in range(runs):
        started = clock()
        for _ in range(loops):
            fn(raw)
        rates.append(n * loops / (clock() - started))
    return statistics.median(rates), min(rates), max(rates)


DECODERS: dict[str, Callable[[bytes], object]] = {
    "orjson.loads only": orjson.loads,
    "decode_tick_columns (used)": decode_tick_columns,
    "decode_ticks (columns as Tick objects)": decode_ticks,
    "item-by-item loop (refused bodies' path)": lambda raw: _decode._checked_columns(raw, time.time(), common=False),
}


def run(runs: int = 3, loops: int = 50) -> list[tuple[str, tuple[float, float, float]]]:
    """Every decoder on every body shape: ("decoder, N symbols, keys", (median, min, max) ticks/s)."""
    rows = []
    for symbols, keys in SHAPES:
        raw = body(N, symbols, keys)
        for name, fn in DECODERS.items():
            label = f"{name}, {symbols:,} symbols, {'client keys' if keys else 'default keys'}"
            rows.append((label, rate(fn, raw, N, runs, loops)))
    return rows


if __name__ == "__main__":
    rows = run()
    base = {}
    print(f"{'decoder, 1,000-tick body':<80} {'ticks/s median (min-max)':>32} {'x orjson':>9}")
    for name, (med, lo, hi) in rows:
        shape = name.split(", ", 1)[1]
        base.setdefault(shape, med)
        print(f"{name:<80} {med:>12,.0f} ({lo:,.0f}-{hi:,.0f}) {med / base[shape]:>8.2f}x")
