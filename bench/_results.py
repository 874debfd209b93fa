"""Benchmark results: machine facts, summaries and percentiles, tables, and the JSON file each scenario writes."""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_RESULTS = Path(__file__).resolve().parent / "results"
"""bench/results: where every result goes by default (postgres and scaleout always write there)."""
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or BENCH_RESULTS)
"""Where ``write_result`` writes ``<scenario>-<timestamp>[-quick].json``: ``$BENCH_RESULTS_DIR`` or bench/results."""
PACKAGES = ("trio", "hypercorn", "quart-trio", "quart", "asyncpg", "orjson", "trio-asyncio", "httpx", "matplotlib")


def handle_termination() -> None:
    """SIGTERM and SIGINT raise KeyboardInterrupt in this process, so ``finally`` blocks stop the
    child servers and drop the databases. (Also undoes a SIGINT left ignored by a parent shell,
    which children would otherwise inherit.)"""
    def interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def log(msg: str) -> None:
    """Progress goes to stderr; stdout carries the table rows and the ``results:`` line."""
    print(msg, file=sys.stderr, flush=True)


def machine_facts() -> dict:
    from importlib import metadata

    facts: dict = {"cores": os.cpu_count(), "python": sys.version.split()[0],
                   "implementation": platform.python_implementation(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            facts["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
        with open("/proc/meminfo") as f:
            facts["mem_total"] = f.readline().split(":", 1)[1].strip()
        facts["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    facts["packages"] = versions
    try:  # which code was measured: the tree is edited while benchmarks run
        git = ["git", "-C", str(ROOT)]
        facts["git_head"] = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                           timeout=10).stdout.strip()
        facts["git_dirty"] = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                                            capture_output=True, text=True, timeout=10).stdout.split("\n")[:-1]
    except (OSError, subprocess.SubprocessError):
        pass
    return facts


def summary(values: list[float]) -> dict:
    """Median, min and max of the runs (and the runs themselves)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": list(values)}


def pcts(seconds: list[float]) -> dict:
    """Latency percentiles in milliseconds (nearest-rank)."""
    if not seconds:
        return {"n": 0}
    s = sorted(seconds)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(p * len(s)))] * 1e3

    return {"n": len(s), "p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99), "max_ms": s[-1] * 1e3,
            "mean_ms": statistics.fmean(s) * 1e3}


def fmt_summary(s: dict | None, spec: str = ",.0f", suffix: str = "") -> str:
    if not s or s.get("median") is None:
        return "-"
    med, lo, hi = s["median"], s["min"], s["max"]
    if len(s.get("runs", [])) <= 1:
        return f"{med:{spec}}{suffix}"
    return f"{med:{spec}}{suffix} ({lo:{spec}}-{hi:{spec}})"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    for r in [headers, *rows]:
        cells = zip(r, widths, strict=True)
        print("  ".join(f"{str(c):<{w}}" if i == 0 else f"{str(c):>{w}}" for i, (c, w) in enumerate(cells)))
    sys.stdout.flush()


def write_result(scenario: str, data: dict, *, quick: bool, started: float | None = None) -> Path:
    """Write ``<scenario>-<timestamp>[-quick].json`` with the machine facts; print ``results: <path>``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{scenario}-{stamp}{'-quick' if quick else ''}.json"
    n = 1
    while path.exists():  # two scenarios finishing within a second
        n += 1
        path = RESULTS / f"{scenario}-{stamp}-{n}{'-quick' if quick else ''}.json"
    payload = {"scenario": scenario, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": quick,
               "wall_seconds": (time.perf_counter() - started) if started is not None else None,
               "machine": machine_facts(), **data}
    path.write_text(json.dumps(payload, indent=2, default=str))
    try:
        shown = path.relative_to(ROOT)
    except ValueError:
        shown = path
    print(f"results: {shown}", flush=True)
    return path
