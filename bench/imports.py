"""Scenario `imports`: ``candlewick import`` of a generated trade file (CSV and Parquet) against raw COPY.

Figures of issue 17 ("Import of a 10M-trade file runs at >= 0.5x the raw COPY rate"):

- ``copy``     raw COPY, as ``python -m bench postgres`` measures it (``bench/_postgres_workers.py``:
               asyncpg ``copy_records_to_table`` of (key, symbol, price, ts, volume) in batches of
               5,000 into an unindexed table, one writer), on ``--copy-rows`` rows (its rate per
               row does not depend on the count);
- ``csv``      ``python -m candlewick import trades.csv`` as a subprocess on a fresh, migrated
               database: wall time from start to exit, the check pass included, and the CPU of the
               command and of Postgres over that time;
- ``parquet``  the same rows from ``trades.parquet``.

The file: ``--rows`` trades (10M) of 100 symbols, 10 per symbol and minute (so 10M span 7 days),
ending 2 hours ago (within the default raw retention and older than the default lateness: every
row is a raw tick, nothing goes through a server), in trade-time order as an exchange export is,
prices to the cent,
volumes to 4 decimals, no key column (each row gets the webhook's default key, the costlier case).
Afterwards the database must hold every row once (``count(*)`` of raw ticks, ``sum(count)`` of
the 1m candles). Results go to ``bench/results/imports-<timestamp>.json``.

Run: ``python -m bench.imports [--rows N] [--quick]``. Needs the real Postgres (``--admin-dsn``).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench._pg import ADMIN_DSN, sql, temp_database
from bench._postgres_workers import run_pg_worker
from bench._proc import postgres_pids
from bench._results import ROOT, log, print_table, write_result
from candlewick.runtime import machine_busy_seconds, pid_cpu_seconds

SYMBOLS = 100
DENSITY = 10.0
"""Trades per symbol and minute: 10M trades of 100 symbols span 7 days (10,000 minutes)."""
END_AGE = 2 * 3_600.0


def make_files(rows: int, folder: Path, seed: int = 1) -> tuple[Path, Path]:
    """trades.csv and trades.parquet with the same ``rows`` trades (see the module's docstring)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    span = rows / (SYMBOLS * DENSITY) * 60
    start = time.time() - END_AGE - span
    names = np.array([f"SYM{i:03d}" for i in range(SYMBOLS)])
    table = pa.table({"symbol": names[rng.integers(0, SYMBOLS, rows)],
                      "ts": np.round(start + np.sort(rng.random(rows)) * span, 3),
                      "price": np.round(100 + rng.random(rows) * 50, 2),
                      "volume": np.round(rng.random(rows) * 10, 4)})
    csv, parquet = folder / "trades.csv", folder / "trades.parquet"
    pcsv.write_csv(table, csv)
    pq.write_table(table, parquet)
    return csv, parquet


def run_import(path: Path, dsn: str, batch: int) -> dict:
    """One ``candlewick import`` on a migrated database: rate, CPU, and the rows the database holds."""
    env = {**os.environ, "DATABASE_URL": dsn}
    subprocess.run([sys.executable, "-m", "candlewick", "migrate"], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    sql(dsn, "CHECKPOINT")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = {pid: pid_cpu_seconds(pid) or 0.0 for pid in postgres_pids()}
    seen = dict(before)
    busy = machine_busy_seconds()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "candlewick", "import", str(path), "--batch", str(batch),
                             "--progress-every", "30"], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:  # the import's backends end with it: their CPU is read while they live
        while not done.wait(0.2):
            for pid in postgres_pids():
                value = pid_cpu_seconds(pid)
                if value is not None:
                    seen[pid] = value
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the import, reaped by communicate()
    cpu = {"importer_cores": (after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime) / elapsed,
           "postgres_cores": sum(v - before.get(pid, 0.0) for pid, v in seen.items()) / elapsed,
           "machine_busy_cores": (machine_busy_seconds() - busy) / elapsed}
    cpu = {k: round(v, 3) for k, v in cpu.items()}
    if proc.returncode != 0:
        raise RuntimeError(f"import of {path.name} failed ({proc.returncode}): {err[-2000:]}")
    raw = sql(dsn, "SELECT count(*) FROM ticks_raw", fetch=True)
    candles = sql(dsn, "SELECT sum(count) FROM ohlc_1m", fetch=True)
    return {"elapsed": elapsed, "raw_rows": raw, "candle_rows": int(candles or 0), "cpu": cpu}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.imports", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000, help="trades in the file (default 10M)")
    p.add_argument("--copy-rows", type=int, default=2_000_000, help="rows of the raw COPY figure (default 2M)")
    p.add_argument("--batch", type=int, default=100_000, help="the import's --batch (default 100,000)")
    p.add_argument("--admin-dsn", default=ADMIN_DSN, help="a database to create the throwaway ones from")
    p.add_argument("--quick", action="store_true", help="20,000 trades: checks the scenario runs")
    args = p.parse_args()
    rows, copy_rows = (20_000, 20_000) if args.quick else (args.rows, args.copy_rows)
    started = time.perf_counter()
    results: dict = {"rows": rows, "copy_rows": copy_rows, "batch": args.batch, "symbols": SYMBOLS, "figures": {}}
    with tempfile.TemporaryDirectory(prefix="cw-bench-import-") as folder:
        log(f"generating {rows:,} trades")
        csv, parquet = make_files(rows, Path(folder))
        results["file_bytes"] = {"csv": csv.stat().st_size, "parquet": parquet.stat().st_size}
        with temp_database(args.admin_dsn) as dsn:
            sql(dsn, "CREATE TABLE copy_ticks (idempotency_key text, symbol text, price float8, ts float8, "
                     "volume float8)")
            log(f"raw COPY of {copy_rows:,} rows")
            r = run_pg_worker("copy", {"ticks": copy_rows, "symbols": SYMBOLS, "prefix": "imp", "dsn": dsn,
                                       "table": "copy_ticks", "writers": 1, "max_seconds": 600})
            results["figures"]["copy"] = {"rate": r["rate"], "elapsed": r["elapsed"], "cpu": r["cpu"]}
        for name, path in (("csv", csv), ("parquet", parquet)):
            with temp_database(args.admin_dsn) as dsn:
                log(f"candlewick import {path.name}")
                r = run_import(path, dsn, args.batch)
                r["rate"] = rows / r["elapsed"]
                r["ratio_to_copy"] = r["rate"] / results["figures"]["copy"]["rate"]
                r["exact"] = r["raw_rows"] == rows and r["candle_rows"] == rows
                results["figures"][name] = r
    copy = results["figures"]["copy"]["rate"]
    table = [["raw COPY (bench postgres)", f"{copy:,.0f}", "1.00", "", "", ""]]
    for name in ("csv", "parquet"):
        f = results["figures"][name]
        table.append([f"candlewick import .{name}", f"{f['rate']:,.0f}", f"{f['ratio_to_copy']:.2f}",
                      f"{f['elapsed']:.1f}", f"{f['cpu'].get('importer_cores', 0):.2f}",
                      f"{f['cpu'].get('postgres_cores', 0):.2f}"])
    print_table(["figure", "ticks/s", "/COPY", "seconds", "import cores", "postgres cores"], table)
    write_result("imports", results, quick=args.quick, started=started)


if __name__ == "__main__":
    main()
