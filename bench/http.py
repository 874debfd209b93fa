"""Scenario `http`: the real server in its own process, a load generator in another, loopback.

For each batch size (100 and 1,000 ticks per request, unique idempotency keys, 100 symbols or
``--symbols N`` taken ``batch`` at a time in turn, every tick's ``ts`` the wall clock at send) and each run, on a fresh server
(``python -m candlewick run --no-feeder``, memory store, ``API_KEYS`` set):

1. **max**: as fast as the generator gets answers from ``--conns`` keep-alive connections for
   ``--duration`` s: ``wrk`` (Debian's package) with a Lua script when it is on PATH, else the
   Python generator (``bench._load`` ``gen``: plain asyncio, raw HTTP/1.1, its own process).
   Reports accepted ticks/s and request latency p50/p99 (request written -> response read).
2. **half**: the Python generator paced at half the ticks/s that run's max reached (wrk cannot
   pace), latency from each request's *scheduled* start, so a stall is not hidden.
3. **count check** through the API once the server is idle (``inFlightTicks`` 0): ticks committed
   (``/ops/health/supervisor`` flushers' ``ticksWritten``), accepted (``/ops/metrics``
   ``candlewick_ticks_total{outcome="accepted"}``), and the sum of the 1-minute candles' ``count``
   over every symbol (``/history?view=ohlc1m``) must each equal the ticks acknowledged in 202s.
   wrk abandons the requests in flight when its time is up; their ticks may be applied without an
   acknowledgement reaching anyone, so with wrk the check is acknowledged <= applied <= sent, and
   the phases after it are checked exactly on their own deltas.

4. **ceiling**: the max phase again, with the same generator, against a quart-trio endpoint on
   hypercorn that only reads and parses the body (``bench._ceiling``), in a fresh process of its
   own. Candlewick's max over it is the share of the framework's budget its own work leaves.

Run: ``python -m bench http [--quick] [--runs N] [--symbols N] [--generator auto|wrk|python]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time

from bench._load import symbol_names
from bench._proc import CpuMeter
from bench._results import fmt_summary, handle_termination, log, print_table, summary, write_result
from bench._server import API_KEY, Server
from bench._worker import run_worker

SYMBOLS = 100

WRK_LUA = r"""
-- Candlewick bench: POST batches of ticks with unique idempotency keys; count what 202s accepted.
local threads = {}
local nthreads = 0

function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
  table.insert(threads, thread)
end

function init(args)
  local batch, nsym, prefix, key = tonumber(args[1]), tonumber(args[2]), args[3], args[4]
  -- one template per run of `batch` symbols, taken in turn, so every symbol gets ticks
  templates = {}
  for j = 0, math.max(1, math.ceil(nsym / batch)) - 1 do
    local parts = {}
    for i = 0, batch - 1 do
      local k = j * batch + i
      parts[#parts + 1] = string.format(
        '{"idempotencyKey":"%s-%02d@@@@@@@@@@-%d","symbol":"B%05d","price":%.2f,"ts":TTTTTTTTTTTTTTTTT,"volume":%.3f}',
        prefix, tid, i, k % nsym, 100 + (k * 7919 % 10000) / 100, 0.5 + (i % 7) / 10)
    end
    templates[#templates + 1] = '{"source":"bench","items":[' .. table.concat(parts, ",") .. ']}'
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["x-api-key"] = key
  counter, sent, acked, accepted, duplicates, bad = 0, 0, 0, 0, 0, 0
end

function request()
  counter = counter + 1
  sent = sent + 1
  local template = templates[(counter - 1) % #templates + 1]
  local body = template:gsub("@@@@@@@@@@", string.format("%010d", counter))
  body = body:gsub("TTTTTTTTTTTTTTTTT", string.format("%17.6f", os.time()))
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status == 202 then
    acked = acked + 1
    accepted = accepted + tonumber(body:match('"accepted":(%d+)') or 0)
    duplicates = duplicates + tonumber(body:match('"duplicates":(%d+)') or 0)
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local s, a, acc, dup, b = 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("sent"); a = a + t:get("acked"); acc = acc + t:get("accepted")
    dup = dup + t:get("duplicates"); b = b + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    '\n{"sent_requests":%d,"acked_requests":%d,"accepted":%d,"duplicates":%d,"bad_status":%d,' ..
    '"wrk_requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    s, a, acc, dup, b, summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk_version() -> str | None:
    path = shutil.which("wrk")
    if not path:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def pick_generator(choice: str) -> tuple[str, str]:
    """('wrk' | 'python', description). ``auto`` honours ``$BENCH_GENERATOR`` (wrk or python)."""
    if choice == "auto":
        choice = os.environ.get("BENCH_GENERATOR", "auto")
    version = wrk_version()
    if choice == "wrk" and not version:
        raise SystemExit("--generator wrk: wrk is not on PATH (Debian: apt-get install wrk)")
    if choice in ("auto", "wrk") and version:
        return "wrk", f"{version}, Lua script, 1 thread"
    return "python", "python asyncio raw HTTP/1.1 keep-alive, own process (bench._load gen)"


def run_wrk(server: Server, *, batch: int, conns: int, duration: float, prefix: str) -> dict:
    fd, script = tempfile.mkstemp(prefix="cw-bench-", suffix=".lua")
    with os.fdopen(fd, "w") as f:
        f.write(WRK_LUA)
    try:
        secs = max(1, round(duration))
        with CpuMeter(server=server.pid) as cpu:
            proc = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--timeout", "30s", "-s", script,
                                   f"{server.base}/api/v1/webhooks/ticks", "--", str(batch), str(SYMBOLS), prefix,
                                   API_KEY], capture_output=True, text=True, timeout=secs + 60)
    finally:
        os.unlink(script)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-2000:]}")
    line = next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{"))
    w = json.loads(line)
    elapsed = w["duration_us"] / 1e6
    return {"generator": "wrk", "requests": w["acked_requests"], "sent_ticks": w["sent_requests"] * batch,
            "accepted": w["accepted"], "duplicates": w["duplicates"], "errors": w["bad_status"] + sum(
                w["errors"].values()), "wrk_errors": w["errors"], "elapsed": elapsed,
            "rate": w["accepted"] / elapsed, "cpu": cpu.result,
            "latency": {"n": w["wrk_requests"], "p50_ms": w["p50_us"] / 1e3, "p90_ms": w["p90_us"] / 1e3,
                        "p99_ms": w["p99_us"] / 1e3, "max_ms": w["max_us"] / 1e3}}


def quiesce(server: Server, timeout: float = 30.0) -> int:
    """Wait until the engine is idle, so counts are final: nothing in flight, or (when admission
    units stay taken, see ``in_flight_after_idle`` in the results) the committed count and every
    mailbox unchanged for a second. Returns the ticks still counted in flight."""
    deadline = time.monotonic() + timeout
    last, stable = None, 0
    while time.monotonic() < deadline:
        tree = server.get_json("/ops/health/supervisor")
        in_flight = tree["admission"]["inFlightTicks"]
        if in_flight == 0:
            return 0
        flushers = [c for c in tree["children"] if c["name"].split(":")[0] == "flusher"]
        actors = next(c for c in tree["children"] if c["name"] == "router")["children"]
        state = (sum(c.get("ticksWritten", 0) for c in flushers), sum(c["mailbox"]["depth"] for c in flushers),
                 sum(a["mailbox"]["depth"] for a in actors), in_flight)
        stable = stable + 1 if state == last and state[1] == state[2] == 0 else 0
        if stable >= 5:
            return in_flight
        last = state
        time.sleep(0.1)
    raise RuntimeError("server did not become idle")


def warm_up(server: Server, tag: str) -> int:
    """Every symbol actor exists before the clock starts; returns the ticks applied."""
    now = time.time()
    items = [{"idempotencyKey": f"{tag}-warm-{s}", "symbol": s, "price": 100.0, "ts": now, "volume": 1.0}
             for s in symbol_names(SYMBOLS)]
    return sum(server.post_ticks(items[i:i + 10_000])["accepted"]  # a request holds 10,000 ticks at most
               for i in range(0, len(items), 10_000))


def one_run(batch: int, *, generator: str, conns: int, duration: float, tag: str) -> dict:
    symbols = symbol_names(SYMBOLS)
    with Server() as server:
        warm = warm_up(server, tag)
        base = {"host": server.host, "port": server.port, "conns": conns, "batch": batch, "symbols": SYMBOLS,
                "server_pid": server.pid}
        c0 = server.counts([])
        # 1. max
        if generator == "wrk":
            mx = run_wrk(server, batch=batch, conns=conns, duration=duration, prefix=f"{tag}-max")
        else:
            mx = run_worker("gen", {**base, "prefix": f"{tag}-max", "duration": duration})
            mx["generator"] = "python"
        leaked1 = quiesce(server)
        c1 = server.counts([])
        # 2. half of this run's max, paced (python generator)
        target = max(batch, mx["rate"] / 2)
        half = run_worker("gen", {**base, "prefix": f"{tag}-half", "duration": duration, "rate": target})
        leaked2 = quiesce(server)
        c2 = server.counts(symbols)  # with the candle sum over every symbol, once: the store's own view
    assert c0["ticks_written"] == warm, (c0, warm)
    checks = {}
    for name, before, after, r in (("max", c0, c1, mx), ("half", c1, c2, half)):
        applied = {k: after[k] - before[k] for k in ("ticks_written", "accepted_metric")}
        acked = r["accepted"]
        exact = all(v == acked for v in applied.values())
        if r.get("generator") == "wrk":  # requests cut off at wrk's stop may be applied unacknowledged
            ok = all(acked <= v <= r["sent_ticks"] for v in applied.values())
            checks[name] = {"acknowledged": acked, "applied": applied, "sent": r["sent_ticks"], "exact": exact,
                            "ok": ok, "rule": "acknowledged <= applied <= sent (wrk abandons in-flight requests)",
                            "applied_unacknowledged": applied["ticks_written"] - acked}
        else:
            checks[name] = {"acknowledged": acked, "applied": applied, "exact": exact, "ok": exact,
                            "rule": "applied == acknowledged"}
    # the store agrees with the flushers: every committed tick is in exactly one candle
    checks["candles"] = {"candle_count": c2["candle_count"], "ticks_written": c2["ticks_written"],
                         "ok": c2["candle_count"] == c2["ticks_written"],
                         "rule": "sum of 1m candle counts over every symbol == ticks committed (warm-up included)"}
    # Admission units still taken on an idle server (a request cancelled right after admission,
    # e.g. a client that hung up, never gives its units back): reported, not hidden.
    return {"batch": batch, "max": mx, "half": half, "checks": checks,
            "in_flight_after_idle": {"after_max": leaked1, "after_half": leaked2}}


def ceiling_run(batch: int, *, generator: str, conns: int, duration: float, tag: str) -> dict:
    """The same max phase against the parse-only quart-trio endpoint (``bench._ceiling``)."""
    with Server(ceiling=True) as server:
        if generator == "wrk":
            return run_wrk(server, batch=batch, conns=conns, duration=duration, prefix=f"{tag}-ceiling")
        base = {"host": server.host, "port": server.port, "conns": conns, "batch": batch, "symbols": SYMBOLS,
                "server_pid": server.pid}
        out = run_worker("gen", {**base, "prefix": f"{tag}-ceiling", "duration": duration})
        out["generator"] = "python"
        return out


def main(argv: list[str] | None = None) -> int:
    global SYMBOLS
    ap = argparse.ArgumentParser(prog="python -m bench http", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny: 1 run, 1 s phases")
    ap.add_argument("--runs", type=int, default=None, help="runs per figure (default 3; quick 1)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per phase (default 10; quick 1)")
    ap.add_argument("--conns", type=int, default=8, help="generator connections (default 8)")
    ap.add_argument("--batches", default="100,1000", help="ticks per request, comma separated")
    ap.add_argument("--symbols", type=int, default=SYMBOLS,
                    help=f"symbols the ticks spread over (default {SYMBOLS}); every request holds `batch` of "
                         "them in turn")
    ap.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                    help="load generator of the max phase (auto: wrk if on PATH; env BENCH_GENERATOR)")
    args = ap.parse_args(argv)
    SYMBOLS = args.symbols
    handle_termination()
    started = time.perf_counter()
    runs = args.runs or (1 if args.quick else 3)
    duration = args.duration or (1.0 if args.quick else 10.0)
    generator, gen_desc = pick_generator(args.generator)
    log(f"http: generator {gen_desc}; {runs} run(s) x {duration:g} s per phase; {SYMBOLS} symbols, "
        f"{args.conns} connections")
    tag = secrets.token_hex(3)
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        rs = []
        for r in range(runs):
            out = one_run(batch, generator=generator, conns=args.conns, duration=duration, tag=f"{tag}-{batch}-{r}")
            out["ceiling"] = ceiling_run(batch, generator=generator, conns=args.conns, duration=duration,
                                         tag=f"{tag}-{batch}-{r}")
            mx, half = out["max"], out["half"]
            out["of_ceiling"] = mx["rate"] / out["ceiling"]["rate"]
            log(f"  batch {batch} run {r + 1}: max {mx['rate']:,.0f} ticks/s p50 {mx['latency']['p50_ms']:.1f} "
                f"p99 {mx['latency']['p99_ms']:.1f} ms ({mx['generator']}; server {mx['cpu'].get('server_cores')} "
                f"cores, machine {mx['cpu']['machine_busy_cores']}) | half {half['rate']:,.0f} ticks/s "
                f"p50 {half['latency']['p50_ms']:.1f} p99 {half['latency']['p99_ms']:.1f} ms | counts "
                f"{'ok' if all(c['ok'] for c in out['checks'].values()) else 'MISMATCH'} | parse-only ceiling "
                f"{out['ceiling']['rate']:,.0f} ticks/s, Candlewick at {out['of_ceiling']:.2f} of it")
            rs.append(out)
        results.append({
            "batch": batch,
            "max_ticks_per_s": summary([o["max"]["rate"] for o in rs]),
            "max_p50_ms": summary([o["max"]["latency"]["p50_ms"] for o in rs]),
            "max_p99_ms": summary([o["max"]["latency"]["p99_ms"] for o in rs]),
            "half_target_ticks_per_s": summary([o["half"]["target_rate"] for o in rs]),
            "half_ticks_per_s": summary([o["half"]["rate"] for o in rs]),
            "half_p50_ms": summary([o["half"]["latency"]["p50_ms"] for o in rs]),
            "half_p99_ms": summary([o["half"]["latency"]["p99_ms"] for o in rs]),
            "ceiling_ticks_per_s": summary([o["ceiling"]["rate"] for o in rs]),
            "ceiling_p99_ms": summary([o["ceiling"]["latency"]["p99_ms"] for o in rs]),
            "of_ceiling": summary([o["of_ceiling"] for o in rs]),
            "counts_ok": all(c["ok"] for o in rs for c in o["checks"].values()),
            "runs": rs,
        })
    rows = []
    for res in results:
        b = res["batch"]
        ok = "yes" if res["counts_ok"] else "NO"
        rows.append([f"http batch {b} max ({generator})", fmt_summary(res["max_ticks_per_s"]),
                     fmt_summary(res["max_p50_ms"], ".1f"), fmt_summary(res["max_p99_ms"], ".1f"), ok])
        rows.append([f"http batch {b} @ half rate (python)", fmt_summary(res["half_ticks_per_s"]),
                     fmt_summary(res["half_p50_ms"], ".1f"), fmt_summary(res["half_p99_ms"], ".1f"), ok])
        rows.append([f"http batch {b} parse-only ceiling ({generator})", fmt_summary(res["ceiling_ticks_per_s"]),
                     "", fmt_summary(res["ceiling_p99_ms"], ".1f"), f"max/ceiling {fmt_summary(res['of_ceiling'], '.2f')}"])
    print_table(["scenario", "accepted ticks/s", "p50 ms", "p99 ms", "applied==acked"], rows)
    write_result("http", {"generator": generator, "generator_description": gen_desc,
                          "half_rate_generator": "python asyncio, paced; latency from scheduled start",
                          "symbols": SYMBOLS, "conns": args.conns, "duration": duration, "runs": runs,
                          "store": "memory", "results": results}, quick=args.quick, started=started)
    return 0 if all(r["counts_ok"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
