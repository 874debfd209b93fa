"""``python -m bench profile SCENARIO [ARGS...]``: where the time of a scenario goes, per process.

Runs ``python -m bench SCENARIO ARGS`` under py-spy (``py-spy record --subprocesses``, sampling
every process the scenario starts: the server under test, its load generator, workers), then
prints, for each Python process that was sampled enough, the functions with the most samples
where they were running (self) and the most samples anywhere on the stack (total), each as a
share of that process's samples. py-spy samples the real processes from outside: the figures
the scenario prints are slowed by the sampling (about 5% at the default rate), so profile to
see *where* time goes, and take the speed from a run without it.

Output: the tables on stdout, ``bench/results/profile-<scenario>-<timestamp>.json`` and py-spy's
collapsed stacks next to it (``.txt``: feed to flamegraph.pl or speedscope for a picture).

Needs py-spy (``pip install -e '.[bench]'``). Examples::

    python -m bench profile engine --symbols 100 --runs 1
    python -m bench profile http --runs 1 --batch 1000
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict

from bench._results import RESULTS, print_table

# frames on nearly every stack, which say nothing: the interpreter's start, module bodies, runners
BORING = re.compile(r"<frozen |\(runpy|^<module> |^_run_module|^run_module|^main \(__main__\.py\)|"
                    r"^run \(_core/_run\.py\)|^unrolled_run ")
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """``func (path/to/mod.py:123)`` -> ``func (mod.py)``: lines vary within one function."""
    m = FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    parts = path.split("/")
    where = "/".join(parts[-2:]) if parts[-1] in ("__init__.py", "_run.py") else parts[-1]
    return f"{m.group('func')} ({where})"


def summarize(raw_lines: list[str], top: int) -> list[dict]:
    """Per process: samples, and the top functions by self and by total samples."""
    samples: Counter[str] = Counter()
    own: dict[str, Counter[str]] = defaultdict(Counter)
    total: dict[str, Counter[str]] = defaultdict(Counter)
    for line in raw_lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        proc_at = max((i for i, f in enumerate(frames) if f.startswith("process ")), default=-1)
        proc = frames[proc_at].split(":", 1)[1].strip('"') if proc_at >= 0 else "?"
        frames = [short(f) for f in frames[proc_at + 1:] if not f.startswith("thread ")]
        samples[proc] += n
        if frames:
            own[proc][frames[-1]] += n
            for f in set(frames):
                if not BORING.search(f):
                    total[proc][f] += n
    out = []
    for proc, n in samples.most_common():
        out.append({"process": proc, "samples": n,
                    "self": [(f, c / n) for f, c in own[proc].most_common(top)],
                    "total": [(f, c / n) for f, c in total[proc].most_common(top)]})
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m bench profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=int, default=100, help="samples per second per process (default 100)")
    ap.add_argument("--top", type=int, default=15, help="functions per table (default 15)")
    ap.add_argument("--min-share", type=float, default=0.05,
                    help="leave out processes with less than this share of all samples (default 0.05)")
    ap.add_argument("scenario", help="a scenario of python -m bench (engine, http, postgres, ...)")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="the scenario's own arguments")
    args = ap.parse_args(argv)
    spy = shutil.which("py-spy")
    if spy is None:
        print("bench profile: py-spy is not on PATH (pip install -e '.[bench]')", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    raw = RESULTS / f"profile-{args.scenario}-{stamp}.txt"
    cmd = [spy, "record", "--subprocesses", "--nonblocking", "--format", "raw", "--rate", str(args.rate),
           "-o", str(raw), "--", sys.executable, "-m", "bench", args.scenario, *args.args]
    print("$ " + " ".join(cmd), flush=True)
    status = subprocess.call(cmd)
    if not raw.exists():
        print("bench profile: py-spy wrote nothing", file=sys.stderr)
        return status or 1
    procs = summarize(raw.read_text().splitlines(), args.top)
    everything = sum(p["samples"] for p in procs) or 1
    shown = [p for p in procs if p["samples"] / everything >= args.min_share]
    for p in shown:
        print(f"\n{p['process']}: {p['samples']:,} samples ({p['samples'] / everything:.0%} of all)")
        rows = [[f"{s:.1%}", fs, f"{t:.1%}", ft]
                for (fs, s), (ft, t) in zip(p["self"], p["total"], strict=False)]
        print_table(["self", "function (where it was running)", "total", "function (anywhere on the stack)"], rows)
    out = raw.with_suffix(".json")
    out.write_text(json.dumps({"command": cmd[cmd.index("--") + 1:], "status": status, "rate": args.rate,
                               "raw": str(raw), "processes": shown}, indent=1))
    print(f"\nresults: {out}\nstacks: {raw}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
