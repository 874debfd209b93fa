"""Chart the benchmark results into one PNG (matplotlib, Agg backend).

Panels: throughput by symbol count (the engine, median with min-max bars, and its ceiling, the
bare loop, as a dashed line; the HTTP, SSE-ingest and Postgres figures at their symbol count; raw
COPY as the storage ceiling line), latency percentiles per scenario (p50 and p99, log scale), and
RSS by symbol count (memory scenario, with the 500 MB target).

Run: ``python -m bench chart [RESULT.json ...]`` (default: the newest result of each scenario in
bench/results/). Writes ``bench/results/chart-<timestamp>.png``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench._results import BENCH_RESULTS, RESULTS, ROOT, log

SCENARIOS = ("engine", "decode", "http", "sse", "memory", "reads", "postgres")


def newest(scenario: str) -> Path | None:
    found: list[Path] = []
    for d in {RESULTS, BENCH_RESULTS}:
        found += [p for p in d.glob(f"{scenario}-*.json") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def load(files: list[str] | None) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if files:
        for f in files:
            data = json.loads(Path(f).read_text())
            name = data.get("scenario") or Path(f).name.split("-", 1)[0]
            out[name] = data
    else:
        for s in SCENARIOS:
            p = newest(s)
            if p is not None:
                out[s] = json.loads(p.read_text())
    return out


def _med(s):
    return s.get("median") if isinstance(s, dict) else None


def _err(s):
    if not isinstance(s, dict) or s.get("median") is None:
        return [[0], [0]]
    return [[s["median"] - s["min"]], [s["max"] - s["median"]]]


def draw(data: dict[str, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(19, 6.5), gridspec_kw={"width_ratios": [1.15, 1.35, 0.7]})

    # -- 1. throughput by symbol count ------------------------------------------------------
    nudges: dict[int, int] = {}

    def at(x: int) -> float:
        """Points sharing a symbol count are spread a little sideways, so none hides another."""
        k = nudges[x] = nudges.get(x, -1) + 1
        return x * (1 + 0.07 * k)

    eng = data.get("engine")
    if eng:
        rows = sorted(eng["results"], key=lambda r: r["symbols"])
        xs = [r["symbols"] for r in rows]
        ys = [r["engine_median"] for r in rows]
        lo = [r["engine_median"] - r["engine_min"] for r in rows]
        hi = [r["engine_max"] - r["engine_median"] for r in rows]
        ax1.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=4, label="engine in-process (median, min-max)")
        ax1.plot(xs, [r["bare_median"] for r in rows], "k--", label="ceiling: bare loop, same arithmetic")
        if all("bare_whole_median" in r for r in rows):
            ax1.plot(xs, [r["bare_whole_median"] for r in rows], "k:",
                     label="ceiling: bare loop, whole list as one batch")
    http = data.get("http")
    if http:
        for res, marker in zip(http["results"], ("s", "D", "^"), strict=False):
            m = res["max_ticks_per_s"]
            ax1.errorbar([at(http.get("symbols", 100))], [_med(m)], yerr=_err(m), marker=marker, capsize=4, ls="none",
                         label=f"http batch {res['batch']} accepted ({http.get('generator')})")
    sse = data.get("sse")
    if sse:
        for res in sse["results"]:
            w = res["ingest_with_ticks_per_s"]
            ax1.errorbar([at(sse.get("ingest_symbols", 100))], [_med(w)], yerr=_err(w), marker="v", capsize=4,
                         ls="none", label=f"http ingest with {res['subscribers']} SSE subscribers")
    pg = data.get("postgres")
    if pg and pg.get("scenarios"):
        sym = pg.get("symbols", 100)
        for name, s in pg["scenarios"].items():
            if s.get("kind") == "copy" and name.endswith("1w"):
                ax1.axhline(s["rate_median"], color="tab:gray", ls=":",
                            label=f"ceiling: raw COPY into Postgres ({name})")
            elif s.get("kind") in ("http", "inproc", "naive"):
                ax1.errorbar([at(sym)], [s["rate_median"]], yerr=[[s["rate_median"] - s["rate_min"]],
                                                              [s["rate_max"] - s["rate_median"]]],
                             marker={"http": "P", "inproc": "X", "naive": "*"}[s["kind"]], capsize=4, ls="none",
                             label=f"postgres {name}")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("symbols")
    ax1.set_ylabel("ticks/s")
    ax1.set_title("Throughput by symbol count")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=7, loc="lower left")

    # -- 2. latency percentiles per scenario --------------------------------------------------
    labels, p50, p99 = [], [], []

    def add(label: str, a, b) -> None:
        if a is not None and b is not None:
            labels.append(label)
            p50.append(a)
            p99.append(b)

    if http:
        for res in http["results"]:
            add(f"http b{res['batch']} max", _med(res["max_p50_ms"]), _med(res["max_p99_ms"]))
            add(f"http b{res['batch']} @half rate", _med(res["half_p50_ms"]), _med(res["half_p99_ms"]))
    if sse:
        for res in sse["results"]:
            add(f"sse K={res['subscribers']} tick->client", _med(res["delay_p50_ms"]), _med(res["delay_p99_ms"]))
    reads = data.get("reads")
    if reads:
        for res in reads["results"]:
            add(f"reads {res['store']} ohlc1m 200", _med(res["ohlc1m_limit200_p50_ms"]),
                _med(res["ohlc1m_limit200_p99_ms"]))
            add(f"reads {res['store']} latest", _med(res["latest_tick_p50_ms"]), _med(res["latest_tick_p99_ms"]))
    if pg and pg.get("scenarios"):
        for name, s in pg["scenarios"].items():
            if "p50_ms_median" in s:
                add(f"postgres {name} ack", s["p50_ms_median"], s["p99_ms_median"])
    if labels:
        ys = range(len(labels))
        ax2.barh([y + 0.2 for y in ys], p50, height=0.4, label="p50")
        ax2.barh([y - 0.2 for y in ys], p99, height=0.4, label="p99")
        ax2.set_yticks(list(ys))
        ax2.set_yticklabels(labels, fontsize=8)
        ax2.invert_yaxis()
        ax2.set_xscale("log")
        for y, v in zip(ys, p99, strict=True):
            ax2.text(v, y - 0.2, f" {v:.1f}", va="center", fontsize=7)
        ax2.legend(fontsize=8)
    ax2.set_xlabel("milliseconds (median of runs)")
    ax2.set_title("Latency percentiles per scenario")
    ax2.grid(True, axis="x", which="both", alpha=0.3)

    # -- 3. memory ---------------------------------------------------------------------------------
    mem = data.get("memory")
    if mem:
        rows = mem["results"]
        xs = [f"{r['symbols']:,}" for r in rows]
        ys = [_med(r["rss_after_mb"]) for r in rows]
        ax3.bar(xs, ys, yerr=[[_err(r["rss_after_mb"])[0][0] for r in rows],
                              [_err(r["rss_after_mb"])[1][0] for r in rows]], capsize=4, color="tab:purple")
        for x, y in zip(xs, ys, strict=True):
            ax3.text(x, y, f"{y:,.0f}", ha="center", va="bottom", fontsize=8)
        ax3.axhline(500, color="tab:red", ls="--", label="target at 10,000 symbols: 500 MB")
        ax3.legend(fontsize=7)
        ax3.set_title(f"RSS after {mem.get('seconds', 3600) / 3600:g} h of trades\n"
                      f"({mem.get('rate_per_symbol')} ticks/s per symbol)", fontsize=10)
    else:
        ax3.set_title("RSS (no memory result)")
    ax3.set_xlabel("symbols")
    ax3.set_ylabel("MB")

    facts = next((d.get("machine") for d in data.values() if d.get("machine")), {}) or {}
    quick = any(d.get("quick") for d in data.values())
    fig.suptitle(f"Candlewick benchmarks{' (--quick: smoke sizes, not figures)' if quick else ''} - "
                 f"{facts.get('cores', '?')} cores, Python {facts.get('python', '?')}, "
                 f"git {str(facts.get('git_head', '?'))[:10]}{' (dirty)' if facts.get('git_dirty') else ''}, "
                 f"{time.strftime('%Y-%m-%d %H:%M')}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("chart SKIPPED: matplotlib is not installed (pip install -e '.[bench]')")
        return 0
    data = load(argv or None)
    if not data:
        log("chart: no results to draw")
        return 0
    path = draw(data, RESULTS / f"chart-{time.strftime('%Y%m%d-%H%M%S')}.png")
    try:
        shown = path.relative_to(ROOT)
    except ValueError:
        shown = path
    print(f"chart: {shown}  ({', '.join(sorted(data))})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
