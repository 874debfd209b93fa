"""bench table: BookTable.apply against one SymbolBook per symbol, batches of 1,000 ticks, 100 to 100,000 symbols.

``python -m bench.table [SYMBOLS ...] [--batches N] [--rate TICKS_PER_S]``. Each run feeds both the
same stream: ticks spread evenly over the symbols, trade times rising at ``rate`` ticks a second of
trade time (so each symbol's newest minute turns over as it would live), unique keys. A warm-up of
``--warm`` batches first (so books have bars and keys), then ``--batches`` timed. The reference
(tests/_reference_book.py, the per-tick book the table is held to bit for bit) groups each batch by
symbol and applies each part to its book, as the dispatcher once did.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from candlewick.domain import BookTable
from candlewick.schema import Tick, digest_bytes
from tests._reference_book import SymbolBook

T0 = 1_730_425_200.0


def stream(symbols: int, batches: int, size: int, rate: float, seed: int = 1):
    """Batches as (rows, price, ts, volume, digest)."""
    rng = np.random.default_rng(seed)
    for b in range(batches):
        rows = rng.integers(0, symbols, size).astype(np.int32)
        ts = T0 + (b * size + np.arange(size)) / rate
        price = np.round(100 + rng.standard_normal(size), 2)
        volume = np.round(rng.random(size) * 10, 3)
        digest = rng.integers(0, 2**64, (size, 2), dtype=np.uint64)
        yield rows, price, ts, volume, digest


def as_ticks(names: list[str], batch) -> dict[str, list[Tick]]:
    rows, price, ts, volume, digest = batch
    raw = digest_bytes(digest)
    parts: dict[str, list[Tick]] = {}
    for i, (r, p, t, v) in enumerate(zip(rows.tolist(), price.tolist(), ts.tolist(), volume.tolist(), strict=True)):
        name = names[r]
        tick = Tick(raw[16 * i:16 * i + 16], name, p, t, v)
        part = parts.get(name)
        if part is None:
            parts[name] = [tick]
        else:
            part.append(tick)
    return parts


def run(symbols: int, batches: int, warm: int, size: int, rate: float, reference: bool, lateness: float) -> dict:
    names = [f"S{i}" for i in range(symbols)]
    table = BookTable(lateness=lateness)
    for name in names:
        table.add(name)
    data = list(stream(symbols, warm + batches, size, rate))
    for batch in data[:warm]:
        table.apply(*batch)
    t0 = time.process_time()
    for batch in data[warm:]:
        table.apply(*batch)
    table_rate = batches * size / (time.process_time() - t0)
    out = {"symbols": symbols, "table_ticks_per_s": round(table_rate), "live_keys": table.live_keys,
           "index_bytes_per_key": round(table._index.nbytes / max(table.live_keys, 1), 1),
           "table_bytes_per_key": round(table.nbytes / max(table.live_keys, 1), 1)}
    if reference:
        books = {name: SymbolBook(name, lateness=lateness) for name in names}
        parts = [as_ticks(names, batch) for batch in data]
        for batch in parts[:warm]:
            for name, ticks in batch.items():
                books[name].apply(ticks)
        t0 = time.process_time()
        for batch in parts[warm:]:
            for name, ticks in batch.items():
                books[name].apply(ticks)
        out["books_ticks_per_s"] = round(batches * size / (time.process_time() - t0))
        out["ratio"] = round(table_rate / out["books_ticks_per_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("symbols", nargs="*", type=int)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--warm", type=int, default=200)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=20_000.0, help="ticks per second of trade time")
    ap.add_argument("--lateness", type=float, default=3600.0,
                    help="a short one reaches the steady state (keys forgotten as fast as taken) within the warm-up")
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()
    for symbols in args.symbols or (100, 10_000, 100_000):
        print(run(symbols, args.batches, args.warm, args.size, args.rate, not args.no_reference, args.lateness), flush=True)


if __name__ == "__main__":
    main()
