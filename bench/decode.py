"""Scenario `decode`: ticks/s decoding a 1,000-tick webhook body, by decoder.

What picked the ingest decoder: orjson + one validating loop (candlewick.schema.decode_ticks)
against orjson + cattrs structuring into an attrs class (the schema library used elsewhere).
"""

from __future__ import annotations

import statistics
import time

import attrs
import orjson

from candlewick.schema import converter, decode_ticks


@attrs.frozen
class TickIn:
    symbol: str
    price: float
    ts: float
    volume: float = 0.0
    idempotencyKey: str | None = None  # noqa: N815 - the wire name


def body(n: int = 1000) -> bytes:
    now = time.time()
    return orjson.dumps({"source": "bench", "items": [
        {"idempotencyKey": f"k{i}", "symbol": f"S{i % 100}", "price": 100.0 + i / 7, "ts": now - i / 1000,
         "volume": 0.5} for i in range(n)]})


def rate(fn, raw: bytes, n: int, repeats: int = 7, loops: int = 50) -> tuple[float, float, float]:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(loops):
            fn(raw)
        rates.append(n * loops / (time.perf_counter() - started))
    return statistics.median(rates), min(rates), max(rates)


def run() -> list[tuple[str, tuple[float, float, float]]]:
    raw = body()
    return [
        ("orjson.loads only", rate(orjson.loads, raw, 1000)),
        ("orjson + validating loop (used)", rate(decode_ticks, raw, 1000)),
        ("orjson + cattrs structure", rate(lambda b: converter.structure(orjson.loads(b)["items"], list[TickIn]),
                                            raw, 1000)),
    ]


if __name__ == "__main__":
    print(f"{'decoder (1,000-tick body)':<34} {'ticks/s median (min-max)':>30}")
    for name, (med, lo, hi) in run():
        print(f"{name:<34} {med:>12,.0f} ({lo:,.0f}-{hi:,.0f})")
