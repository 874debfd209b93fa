"""The benchmark harness keeps working: ``python -m bench all --quick`` runs every scenario tiny, and ``pgscale --quick`` too.

It asserts nothing about speed (figures are taken by the harness on a quiet machine, never by
timed tests): only that the run exits 0, that every scenario either ran and wrote its JSON result
(with the machine facts) or was skipped with a reason (Postgres absent), and that the chart was
drawn. ``--quick`` is built to finish in well under 60 s; the timeout below only guards a hang on
a loaded machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("engine", "decode", "http", "sse", "memory", "reads", "postgres")


def _load(rel: str) -> dict:
    path = Path(rel)
    return json.loads((path if path.is_absolute() else ROOT / path).read_text())


@pytest.mark.e2e
def test_bench_all_quick(tmp_path: Path) -> None:
    env = {**os.environ, "BENCH_RESULTS_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bench", "all", "--quick"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - started
    print(f"python -m bench all --quick: {wall:.1f} s")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"

    (index_path,) = tmp_path.glob("all-*-quick.json")
    index = json.loads(index_path.read_text())
    assert index["quick"] is True and index["failed"] is False and index["chart"] == "ok"
    assert set(index["scenarios"]) == set(SCENARIOS)
    for name, entry in index["scenarios"].items():
        if entry["status"] == "skipped":
            assert name == "postgres" and entry["why"], entry  # only for want of a database
            continue
        assert entry["status"] == "ok", (name, entry)
        assert entry["results"], f"{name} wrote no result"
        for rel in entry["results"]:
            data = _load(rel)
            assert data["machine"]["cores"] >= 1, (name, rel)
            if name != "postgres":  # bench/postgres.py keeps its own layout
                assert data["scenario"] == name and data["quick"] is True
                assert data["machine"]["packages"]["trio"], (name, rel)
    assert list(tmp_path.glob("chart-*.png")), "no chart drawn"

    http = _load(index["scenarios"]["http"]["results"][0])
    # correctness, not speed: every acknowledged tick was applied, exactly once
    assert all(r["counts_ok"] for r in http["results"]), http["results"]


@pytest.mark.e2e
def test_bench_pgscale_quick(tmp_path: Path) -> None:
    """``python -m bench pgscale --quick``: every part ran (or, for retention, said why it could not),
    and the figures add up. Not a speed test: the targets are for the full run on a quiet machine."""
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (Debian: apt-get install wrk)")
    env = {**os.environ, "BENCH_RESULTS_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bench", "pgscale", "--quick"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    print(f"python -m bench pgscale --quick: {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    (path,) = tmp_path.glob("pgscale-*-quick.json")
    data = json.loads(path.read_text())
    assert data["scenario"] == "pgscale" and data["quick"] is True and "skipped" not in data, data.get("skipped")
    assert data["checks_ok"] is True

    ingest = data["ingest"]
    assert len(ingest["slices"]) == 3
    for s in ingest["slices"]:
        assert s["accepted"] > 0 and s["bad_status"] == 0 and s["skipped"] == 0, s
        assert 0 < s["latency"]["p50_ms"] <= s["latency"]["p90_ms"] <= s["latency"]["p99_ms"], s["latency"]
        assert s["us_per_tick"]["postgres"] > 0 and s["us_per_tick"]["server"] > 0, s["us_per_tick"]
    end = ingest["end"]
    assert end["rows"] == end["flusher_ticks_written"] and end["acknowledged"] <= end["applied"] <= end["sent"], end
    summary = ingest["summary"]
    for figure in ("rate_ratio", "p99_ratio", "postgres_us_per_tick", "of_copy", "bytes_per_row"):
        assert summary[figure] is not None and summary[figure] > 0, (figure, summary)

    history = data["history"]
    assert set(history["reads"]) == {"1d_limit400", "1h_limit2000", "1m_limit2000"}
    for read in history["reads"].values():
        assert read["statuses"] == [200] and read["items"] == read["expected_items"] > 0, read
        assert len(read["runs_ms"]) == 3 and read["median_ms"] > 0 and read["ok"], read
    concurrent = history["concurrent"]
    assert concurrent["readers"] == 10 and concurrent["statuses"] == [200] and concurrent["ok"], concurrent
    assert concurrent["rss_peak_mb"] >= concurrent["rss_before_mb"] > 0, concurrent

    retention = data["retention"]
    if retention["available"]:
        assert "error" not in retention and retention["gone"] and retention["gone_after_s"] >= 0, retention
    else:  # never a silent pass: the report says why, in the JSON and under the table
        assert retention["why"] and f"retention: not available on this schema: {retention['why']}" in proc.stdout
    assert "rows stored at the end" in proc.stdout and "results: " in proc.stdout
