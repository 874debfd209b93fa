"""`candlewick import` as a tool: its flags, its refusals, progress, Ctrl-C and resume, and recent ticks via the server."""

from __future__ import annotations

import os
import re
import sys
import time

import pyarrow as pa
import pytest

from tests._import_files import RAW, make_trades, query, write_csv, write_parquet
from tests.conftest import API_KEY, server_process
from tests.e2e._cli import (candlewick, events, interrupt_when, log_lines, on_terminal, only_line,
                            options_without_help)

DAY = 86_400


@pytest.mark.parametrize(("flag", "value"), [("--batch", "0"), ("--parallel", "0"), ("--format", "xlsx"), ("--url", "ftp://x"),
                                             ("--lateness", "-1"), ("--retries", "-1"), ("--progress-every", "0")])
def test_a_bad_import_flag_exits_2_with_one_line_naming_it(flag, value, tmp_path):
    """Flags are checked like settings: exit 2 and one bad_configuration line naming the flag."""
    path = write_csv(make_trades(10, start=time.time() - DAY, span=10), tmp_path / "t.csv")
    out = candlewick("import", str(path), flag, value, env={"DATABASE_URL": "postgresql://127.0.0.1:1/x"})
    assert out.returncode == 2, out.stderr[-2000:]
    line = only_line(out.stderr)
    assert (line["event"], line["setting"], line["value"]) == ("bad_configuration", flag, value)


def test_import_needs_a_database_and_a_format(tmp_path):
    """No DATABASE_URL, or a file name that says no format: exit 2 naming what to set."""
    path = write_csv(make_trades(10, start=time.time() - DAY, span=10), tmp_path / "t.csv")
    out = candlewick("import", str(path), env={"DATABASE_URL": ""})
    assert out.returncode == 2 and only_line(out.stderr)["setting"] == "DATABASE_URL"
    odd = path.rename(tmp_path / "t.data")
    out = candlewick("import", str(odd), env={"DATABASE_URL": "postgresql://127.0.0.1/x"})
    assert out.returncode == 2 and only_line(out.stderr)["setting"] == "--format"


def test_a_file_that_is_not_trades_is_refused_in_one_line(pg_url, tmp_path):
    """A missing column, a malformed CSV line, a file that is not Parquet: one import_refused line, exit 1."""
    (tmp_path / "cols.csv").write_text("symbol,when,price\nA,1,2\n")
    (tmp_path / "ragged.csv").write_text("symbol,ts,price,volume\nA,1700000000,2,1\nB,1700000000,2\n")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    for name, says in [("cols.csv", "missing: ts"), ("ragged.csv", "line 3: Expected 4 columns, got 3"),
                       ("bad.parquet", "not a Parquet file")]:
        out = candlewick("import", str(tmp_path / name), env={"DATABASE_URL": pg_url})
        assert out.returncode == 1, out.stderr[-2000:]
        [line] = [x for x in log_lines(out.stderr) if x["level"] == "error"]
        assert line["event"] == "import_refused" and says in line["error"], line


def test_an_unreachable_database_is_one_line_and_exit_1(tmp_path):
    """Nothing listens where DATABASE_URL points: one import_failed line saying so, no traceback."""
    path = write_csv(make_trades(10, start=time.time() - DAY, span=10), tmp_path / "t.csv")
    out = candlewick("import", str(path), env={"DATABASE_URL": "postgresql://127.0.0.1:1/nowhere"})
    assert out.returncode == 1, out.stderr[-2000:]
    line = only_line(out.stderr)
    assert line["event"] == "import_failed" and "run the same command again" in line["hint"]


def test_recent_ticks_are_refused_without_a_server(pg_url, tmp_path):
    """Rows newer than now - LATENESS and no --url: import_refused saying how many and what to do; nothing applied."""
    now = time.time()
    table = pa.concat_tables([make_trades(200, start=now - 2 * DAY, span=DAY, seed=1),
                              make_trades(7, start=now - 600, span=300, seed=2)])
    out = candlewick("import", str(write_csv(table, tmp_path / "t.csv")), env={"DATABASE_URL": pg_url})
    assert out.returncode == 1, out.stderr[-2000:]
    [line] = [x for x in log_lines(out.stderr) if x["level"] == "error"]
    assert (line["event"], line["live_rows"]) == ("import_refused", 7) and "--url" in line["hint"]
    assert query(pg_url, "SELECT count(*) FROM ticks")[0][0] == 0


def test_recent_ticks_go_through_the_running_server(pg_url, tmp_path):
    """With --url, the rows newer than now - LATENESS are posted to the server (it applies them live, its book sees
    them), the rest go straight to the database: every row stored once, the server's latest tick the file's newest."""
    now = time.time()
    old = make_trades(300, start=now - 2 * DAY, span=DAY, seed=3)
    recent = pa.table({"symbol": ["LIVE"] * 5, "ts": [now - 500 + i for i in range(5)],
                       "price": [1.0, 2.0, 3.0, 4.0, 5.0], "volume": [1.0] * 5, "key": [None, "k1", None, "k3", None]})
    path = write_parquet(pa.concat_tables([old, recent]), tmp_path / "t.parquet", timestamps=False)
    with server_process(tmp_path, env={"DATABASE_URL": pg_url}) as sp:
        out = candlewick("import", str(path), "--url", sp.base_url, "--api-key", API_KEY, env={"DATABASE_URL": pg_url})
        assert out.returncode == 0, out.stderr[-2000:]
        done = log_lines(out.stderr)[-1]
        assert (done["event"], done["live_rows"], done["raw_rows"]) == ("import_done", 5, 300)
        import httpx

        latest = httpx.get(sp.base_url + "/api/v1/ticks/LIVE", timeout=5).json()
        assert latest["price"] == 5.0
        again = candlewick("import", str(path), "--url", sp.base_url, "--api-key", API_KEY,
                           env={"DATABASE_URL": pg_url})
        assert events(again.stderr) == ["import_already_done"]
    assert query(pg_url, "SELECT count(*) FROM ticks")[0][0] == 305
    assert query(pg_url, "SELECT sum(count) FROM ohlc_1m")[0][0] == 305


def test_ctrl_c_stops_after_a_commit_and_the_same_command_continues(pg_url, tmp_path):
    """SIGINT mid-import: import_interrupted with the rows done and exit 130; the same command then resumes there and
    ends with every row stored once. Without a terminal, progress comes as import_progress lines."""
    path = write_csv(make_trades(20_000, start=time.time() - 2 * DAY, span=DAY, seed=9), tmp_path / "t.csv")
    args = [sys.executable, "-m", "candlewick", "import", str(path), "--batch", "100", "--progress-every", "0.05"]
    err = tmp_path / "import.err"
    code = interrupt_when(args, err, r'"phase": "importing", "rows": [1-9]', deadline=60, wait=20,
                          env={**os.environ, "DATABASE_URL": pg_url})
    lines = log_lines(err.read_text())
    assert code == 130 and lines[-1]["event"] == "import_interrupted", lines[-3:]
    done = lines[-1]["rows_done"]
    assert 0 < done < 20_000 and query(pg_url, "SELECT sum(rows) FROM import_chunks")[0][0] == done
    assert query(pg_url, "SELECT count(*) FROM ticks")[0][0] == done
    out = candlewick("import", str(path), env={"DATABASE_URL": pg_url}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(query(pg_url, RAW)) == 20_000 and query(pg_url, "SELECT sum(count) FROM ohlc_1m")[0][0] == 20_000


def test_on_a_terminal_progress_is_a_bar_redrawn_in_place(pg_url, tmp_path):
    """With stderr a terminal: a bar (percentage, rows/s, ETA) rewritten with a carriage return, then the summary."""
    path = write_csv(make_trades(30_000, start=time.time() - 2 * DAY, span=DAY, seed=2), tmp_path / "t.csv")
    code, text = on_terminal("import", str(path), "--batch", "500", env={"DATABASE_URL": pg_url}, timeout=120)
    assert code == 0, text[-2000:]
    assert text.count("\r\x1b[K") >= 2 and re.search(r"importing \[[#.]+\] +\d+\.\d%", text), text[-2000:]
    assert "rows/s" in text and "ETA" in text and '"event": "import_done"' in text


def test_every_import_flag_has_help_text():
    """`candlewick import --help` says what each option does."""
    out = candlewick("import", "--help")
    assert out.returncode == 0 and "FILE" in out.stdout.upper()
    assert options_without_help(out.stdout) == [], out.stdout
