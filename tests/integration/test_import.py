"""`candlewick import` against the real Postgres: the engine's results, exactly once, resumable, retention."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pyarrow as pa
import pytest
import trio

from tests._import_files import (RAW, assert_same_candles, candles, make_trades, query, webhook_items, write_csv,
                                 write_parquet)
from tests.conftest import ROOT, _pg_admin, pg_database_url, start_live_server
from tests.e2e._cli import candlewick, log_lines

DAY = 86_400
DONE = "SELECT coalesce(sum(rows), 0) FROM import_chunks"
"""Rows of the file committed, as the ledger has them."""


@pytest.fixture
def pg_urls():
    """Fresh databases on the real server (as many as a test asks for), dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"cw_test_{uuid.uuid4().hex[:12]}"
        _pg_admin(f"CREATE DATABASE {name}")
        made.append(name)
        return pg_database_url(name)

    yield make
    for name in made:
        _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run_import(url: str, path, *args: str, env: dict[str, str] | None = None, timeout: float = 120.0):
    out = candlewick("import", str(path), *args, env={"DATABASE_URL": url, **(env or {})}, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return log_lines(out.stderr)


async def test_csv_and_parquet_imports_store_what_the_engine_stores_for_the_same_ticks(nursery, pg_urls, tmp_path):
    """The same trades (keyed and not, ties in trade time, repeated rows, a day of history) posted through the
    engine, imported from CSV and imported from Parquet: the same raw ticks (keys included: a row without a key gets
    the webhook's default key) and the same 1m candles and rollups."""
    table = make_trades(3_000, start=time.time() - 3 * DAY, span=2 * DAY, seed=7, repeats=40)
    engine_db, csv_db, parquet_db = pg_urls(), pg_urls(), pg_urls()
    live = await start_live_server(nursery, database_url=engine_db, lateness=10 * DAY, dedupe_max_keys=10_000_000)
    items = webhook_items(table)
    for lo in range(0, len(items), 1_000):  # in file order, one request after another: the import's applied order
        r = await live.post_ticks(items[lo:lo + 1_000], source="import:trades")
        assert r.status_code == 202, r.text
    await live.client.aclose()
    live.running.stop()
    with trio.fail_after(15):
        await live.engine.wait_stopped()

    csv, parquet = write_csv(table, tmp_path / "a.csv"), write_parquet(table, tmp_path / "b.parquet")
    # One chunk after another (ties straddling chunks, as at rows 699/700, resolved in file order), and chunks
    # committed two at a time (where no tie straddles chunks: their order is the order they commit in).
    await trio.to_thread.run_sync(lambda: run_import(csv_db, csv, "--batch", "700", "--parallel", "1",
                                                     "--source", "import:trades"))
    await trio.to_thread.run_sync(lambda: run_import(parquet_db, parquet, "--batch", "500", "--source", "import:trades"))
    want_raw = query(engine_db, RAW)
    assert len(want_raw) == 3_000  # the repeats were duplicates
    assert query(csv_db, RAW) == want_raw and query(parquet_db, RAW) == want_raw
    want = candles(engine_db)
    assert len(want) > 3_000
    assert_same_candles(candles(csv_db), want)
    assert_same_candles(candles(parquet_db), want)


def test_a_second_import_of_the_same_file_changes_nothing(pg_urls, tmp_path):
    """Run twice: the second run finds the file done in the ledger (by its content, whatever its name) and applies
    nothing; the stored ticks and candles are as after the first."""
    url = pg_urls()
    path = write_csv(make_trades(2_000, start=time.time() - 2 * DAY, span=DAY, seed=3), tmp_path / "t.csv")
    first = run_import(url, path, "--batch", "500")
    assert first[-1]["event"] == "import_done" and first[-1]["rows"] == 2_000
    raw, bars = query(url, RAW), candles(url)
    renamed = path.rename(tmp_path / "copy-of-t.csv")
    again = run_import(url, renamed, "--batch", "300")
    assert [line["event"] for line in again] == ["import_already_done"]
    assert query(url, RAW) == raw and candles(url) == bars


def test_an_import_killed_midway_resumes_to_exactly_the_full_result(pg_urls, tmp_path):
    """kill -9 once the ledger shows a committed chunk (and before the last), then the same command again: the
    result equals an import done in one go, every tick once."""
    table = make_trades(6_000, start=time.time() - 2 * DAY, span=DAY, seed=5)
    path = write_csv(table, tmp_path / "t.csv")
    whole, killed = pg_urls(), pg_urls()
    run_import(whole, path)

    proc = subprocess.Popen([sys.executable, "-m", "candlewick", "import", str(path), "--batch", "50"],
                            env={**os.environ, "DATABASE_URL": killed}, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        done = 0
        while not done:
            assert proc.poll() is None and time.monotonic() < deadline, "the import ended before a chunk was seen"
            done = query(killed, DONE)[0][0] if _has_ledger(killed) else 0
            time.sleep(0.01)  # polling the ledger of a child process, with a deadline
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    [(done, total)] = query(killed, f"SELECT ({DONE}), rows_total FROM import_files")
    assert 0 < done < total == 6_000
    assert query(killed, "SELECT count(*) FROM ticks")[0][0] == done  # committed chunks only, whole

    lines = run_import(killed, path, "--batch", "2000")
    [started] = [line for line in lines if line["event"] == "import_started"]
    assert started["resume_at"] == done
    assert query(killed, RAW) == query(whole, RAW)
    assert_same_candles(candles(killed), candles(whole))


def _has_ledger(url: str) -> bool:
    return bool(query(url, "SELECT 1 FROM pg_tables WHERE tablename = 'import_chunks'"))


def test_candlewick_migrate_makes_the_ledger(pg_urls, tmp_path):
    """The ledger is part of the schema (v4): `candlewick migrate` makes it, empty, and an import then records
    its file and chunks there."""
    url = pg_urls()
    out = candlewick("migrate", env={"DATABASE_URL": url})
    assert out.returncode == 0, out.stderr[-2000:]
    assert _has_ledger(url) and query(url, f"SELECT ({DONE}), (SELECT count(*) FROM import_files)") == [(0, 0)]
    path = write_csv(make_trades(300, start=time.time() - 2 * DAY, span=DAY, seed=3), tmp_path / "t.csv")
    run_import(url, path, "--batch", "100")
    assert query(url, f"SELECT ({DONE}), (SELECT count(*) FROM import_chunks)") == [(300, 3)]


def test_ticks_older_than_raw_retention_make_candles_but_no_raw_rows(pg_urls, tmp_path):
    """With raw ticks kept 2 days: a file of trades from 10 days ago and from yesterday stores yesterday's as raw
    ticks, and every trade in the candles (1m within its retention, rollups for all)."""
    now = time.time()
    old = make_trades(500, start=now - 10 * DAY, span=DAY, seed=1)
    recent = make_trades(500, start=now - DAY, span=DAY / 2, seed=2)
    path = write_csv(pa.concat_tables([old, recent]), tmp_path / "t.csv")
    url = pg_urls()
    lines = run_import(url, path, env={"PG_RETENTION_RAW": str(2 * DAY)})
    done = lines[-1]
    assert (done["raw_rows"], done["candle_only_rows"]) == (500, 500)
    [(count, lo)] = query(url, "SELECT count(*), min(ts) FROM ticks")
    assert count == 500 and lo >= now - 2 * DAY
    assert query(url, "SELECT sum(count) FROM ohlc_1m")[0][0] == 1_000
    for interval, total in query(url, "SELECT interval, sum(count) FROM ohlc_rollups GROUP BY 1"):
        assert total == 1_000, interval


def test_an_invalid_row_applies_nothing_and_names_its_line(pg_urls, tmp_path):
    """A bad price on line 1,502 of a CSV: one import_invalid_row line naming row, line, field and value, exit 1,
    and nothing stored, not even the chunks before it."""
    path = write_csv(make_trades(3_000, start=time.time() - 2 * DAY, span=DAY, seed=4), tmp_path / "t.csv")
    lines = path.read_text().splitlines(keepends=True)
    parts = lines[1501].split(",")
    parts[2] = "-3"
    lines[1501] = ",".join(parts)
    path.write_text("".join(lines))
    url = pg_urls()
    out = candlewick("import", str(path), "--batch", "100", env={"DATABASE_URL": url})
    assert out.returncode == 1, out.stderr[-2000:]
    [line] = [x for x in log_lines(out.stderr) if x["level"] == "error"]
    assert (line["event"], line["row"], line["line"], line["field"], line["value"]) == \
        ("import_invalid_row", 1_501, 1_502, "price", "-3")
    assert "price required finite number > 0" in line["error"]
    assert not _has_ledger(url) or query(url, "SELECT count(*) FROM import_files")[0][0] == 0
    assert query(url, "SELECT count(*) FROM ticks")[0][0] == 0


def test_an_invalid_parquet_row_is_named_by_its_row(pg_urls, tmp_path):
    """Parquet has no lines: the invalid row is named by its number (from 1), the rule and the value."""
    table = make_trades(1_000, start=time.time() - 2 * DAY, span=DAY, seed=6)
    symbols = table.column("symbol").to_pylist()
    symbols[700] = "NOT A SYMBOL"
    path = write_parquet(table.set_column(0, "symbol", pa.array(symbols)), tmp_path / "t.parquet")
    url = pg_urls()
    out = candlewick("import", str(path), "--batch", "300", env={"DATABASE_URL": url})
    assert out.returncode == 1, out.stderr[-2000:]
    [line] = [x for x in log_lines(out.stderr) if x["level"] == "error"]
    assert (line["event"], line["row"], line["line"], line["field"], line["value"]) == \
        ("import_invalid_row", 701, None, "symbol", "NOT A SYMBOL")
    assert query(url, "SELECT count(*) FROM ticks")[0][0] == 0


def test_a_file_of_no_trades_is_done_at_once(pg_urls, tmp_path):
    """A header and nothing else: done, zero rows, and done again the next time."""
    path = tmp_path / "empty.csv"
    path.write_text("symbol,ts,price,volume\n")
    url = pg_urls()
    assert run_import(url, path)[-1]["rows"] == 0
    assert [line["event"] for line in run_import(url, path)] == ["import_already_done"]


def test_an_import_drops_no_partition_whatever_its_retention(pg_urls, tmp_path):
    """Retention is the server's to apply: raw ticks of 10 days ago (kept with 30 days of raw retention) are
    still there after an import run with 2 days."""
    now = time.time()
    url = pg_urls()
    run_import(url, write_csv(make_trades(300, start=now - 10 * DAY, span=DAY, seed=1), tmp_path / "a.csv"),
               env={"PG_RETENTION_RAW": str(30 * DAY)})
    run_import(url, write_csv(make_trades(300, start=now - DAY, span=DAY / 2, seed=2), tmp_path / "b.csv"),
               env={"PG_RETENTION_RAW": str(2 * DAY)})
    assert query(url, "SELECT count(*) FROM ticks")[0][0] == 600
