"""``python -m bench SCENARIO [args]``: run one benchmark scenario, or ``all`` of them.

Scenarios (each prints a table and writes ``bench/results/<scenario>-<timestamp>.json``; ``--quick``
makes each tiny, ``--runs N`` sets the runs per figure, default 3; ``SCENARIO --help`` for more):

  engine    in-process pipeline vs the bare loop, by symbol count (bench/engine.py)
  decode    ingest decoders, ticks/s on a 1,000-tick body (bench/decode.py)
  http      real server process + load generator (wrk or Python): ticks/s, p50/p99, counts (bench/http.py)
  sse       K subscribers while ticks flow: events/s, tick-to-client delay, ingest cost (bench/sse.py)
  memory    RSS after 1 h of simulated trades at 1,000 / 10,000 symbols (bench/memory.py)
  reads     candle and latest-tick read latency under ingest, memory and Postgres (bench/reads.py)
  postgres  durable ingest vs raw COPY and a naive INSERT (bench/postgres.py; --runs -> --repeats)
  scaleout  several processes over Redis + Postgres (bench/scaleout.py; not part of `all`)
  pgscale   Postgres for months of data: 10 min of sustained durable ingest to 20M+ rows, reads over
            400 days of history, retention (bench/pgscale.py; not part of `all`; about 20 min)
  profile   any scenario under py-spy: where each process's time goes (bench/profile.py):
            python -m bench profile SCENARIO [its args]
  chart     draw the newest results into bench/results/chart-<timestamp>.png (bench/chart.py)
  all       every scenario above in that order (each in its own process), then the chart:
            python -m bench all [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import runpy
import signal
import subprocess
import sys
import time

ORDER = ("engine", "decode", "http", "sse", "memory", "reads", "postgres")
MODULES = {"engine": "bench.engine", "postgres": "bench.postgres", "http": "bench.http", "sse": "bench.sse",
           "memory": "bench.memory", "reads": "bench.reads", "chart": "bench.chart", "scaleout": "bench.scaleout", "pgscale": "bench.pgscale",
           "soak": "bench.soak", "profile": "bench.profile"}


def decode_main(argv: list[str]) -> int:
    """bench/decode.py's measurement, with the harness's table and JSON output."""
    from bench import decode
    from bench._results import print_table, write_result

    ap = argparse.ArgumentParser(prog="python -m bench decode", description=(decode.__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="accepted for `all`; the scenario is already short")
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    rows = decode.run(runs=args.runs)
    print_table(["decoder (1,000-tick body)", "ticks/s median (min-max)"],
                [[name, f"{med:,.0f} ({lo:,.0f}-{hi:,.0f})"] for name, (med, lo, hi) in rows])
    write_result("decode", {"body_ticks": 1000, "results": [
        {"decoder": name, "ticks_per_s": {"median": med, "min": lo, "max": hi}} for name, (med, lo, hi) in rows]},
        quick=args.quick, started=started)
    return 0


def run_child(name: str, argv: list[str], timeout: float) -> tuple[str, list[str], float]:
    """Run ``python -m bench NAME ARGV`` in its own process group, echo its output, and return
    (status, result files, seconds). The group is killed on timeout or interrupt, taking any
    server or worker process it started with it."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench", name, *argv], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, bufsize=1, start_new_session=True)
    files: list[str] = []
    timer_expired = False

    def kill_group() -> None:
        # SIGINT first: the scenario runs its finally blocks (stops its server, drops its database;
        # bench/postgres.py too), a candlewick server stops gracefully, wrk and workers end.
        for sig, grace in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    import threading

    def watchdog() -> None:
        nonlocal timer_expired
        if proc.poll() is None:
            timer_expired = True
            print(f"bench all: {name} exceeded {timeout:g} s; killing it", file=sys.stderr, flush=True)
            kill_group()

    timer = threading.Timer(timeout, watchdog)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            m = re.match(r"results: (\S+)", line.strip())
            if m:
                files.append(m.group(1))
        proc.wait()
    except BaseException:
        kill_group()
        raise
    finally:
        timer.cancel()
        # anything left in the group (a server whose parent died) goes too
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    seconds = time.perf_counter() - started
    if timer_expired:
        return "timeout", files, seconds
    return ("ok" if proc.returncode == 0 else f"failed ({proc.returncode})"), files, seconds


def all_main(argv: list[str]) -> int:
    from bench._pg import postgres_available
    from bench._results import RESULTS, ROOT, handle_termination, print_table

    ap = argparse.ArgumentParser(prog="python -m bench all", description="Every scenario, then the chart.")
    ap.add_argument("--quick", action="store_true", help="every scenario tiny (the whole run well under 60 s)")
    ap.add_argument("--runs", type=int, default=None, help="runs per figure for every scenario (default 3; "
                                                           "quick 1 for the server scenarios)")
    ap.add_argument("--skip", default="", help="scenarios to leave out, comma separated")
    args = ap.parse_args(argv)
    handle_termination()  # before any child starts: they inherit a default SIGINT, not an ignored one
    started = time.perf_counter()
    skip = {s for s in args.skip.split(",") if s}
    timeout = 120.0 if args.quick else 4 * 3600.0  # per scenario; the group is killed past it
    summary_rows, index = [], {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick,
                               "runs": args.runs, "scenarios": {}}
    all_files: list[str] = []
    failed = False
    for name in ORDER:
        if name in skip:
            index["scenarios"][name] = {"status": "skipped", "why": "--skip"}
            summary_rows.append([name, "skipped (--skip)", "-", "-"])
            continue
        child = []
        if args.quick:
            child.append("--quick")
        if args.runs is not None and name != "decode":
            child += ["--repeats" if name == "postgres" else "--runs", str(args.runs)]
        if name == "postgres":
            why = postgres_available()
            if why:
                print(f"bench all: postgres SKIPPED: {why}", file=sys.stderr, flush=True)
                index["scenarios"][name] = {"status": "skipped", "why": why}
                summary_rows.append([name, "skipped (no Postgres)", "-", "-"])
                continue
        print(f"\n=== bench {name} {' '.join(child)}", flush=True)
        status, files, seconds = run_child(name, child, timeout)
        failed |= status != "ok"
        all_files += files
        index["scenarios"][name] = {"status": status, "seconds": round(seconds, 1), "results": files}
        summary_rows.append([name, status, f"{seconds:.1f}", ", ".join(files) or "-"])
    print("\n=== chart", flush=True)
    from bench import chart

    paths = [str(ROOT / f) if not os.path.isabs(f) else f for f in all_files]
    try:
        chart.main(paths)
        index["chart"] = "ok"
    except Exception as exc:  # noqa: BLE001 - the figures are written; a chart failure is reported
        print(f"bench all: chart failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        index["chart"] = f"failed: {exc}"
        failed = True
    index["wall_seconds"] = round(time.perf_counter() - started, 1)
    index["failed"] = failed
    RESULTS.mkdir(parents=True, exist_ok=True)
    index_path = RESULTS / f"all-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
    index_path.write_text(json.dumps(index, indent=2))
    print()
    print_table(["scenario", "status", "seconds", "results"], summary_rows)
    print(f"all: {index_path}  ({index['wall_seconds']:.0f} s{', FAILED' if failed else ''})", flush=True)
    return 1 if failed else 0


def main() -> int:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    name, rest = args[0], args[1:]
    if name == "all":
        return all_main(rest)
    if name == "decode":
        return decode_main(rest)
    if name not in MODULES:
        print(__doc__.strip())
        return 2
    module = MODULES[name]
    sys.argv = [module, *rest]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
