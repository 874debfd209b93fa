"""The benchmark harness keeps working: ``python -m bench all --quick`` runs every scenario tiny.

It asserts nothing about speed (figures are taken by the harness on a quiet machine, never by
timed tests): only that the run exits 0, that every scenario either ran and wrote its JSON result
(with the machine facts) or was skipped with a reason (Postgres absent), and that the chart was
drawn. ``--quick`` is built to finish in well under 60 s; the timeout below only guards a hang on
a loaded machine.
"""

from __future__ import annotations

import json
import os
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
