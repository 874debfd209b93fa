"""Scenario `sse`: K subscribers on loopback while ticks flow; delivery, delay, and the cost to ingest.

For each K (100 and 1,000; ``--quick``: 10) and each run, on a fresh server
(``python -m candlewick run --no-feeder``, memory store):

1. **ingest, no subscribers**: the http scenario's generator (wrk when on PATH, else Python;
   ``$BENCH_GENERATOR`` picks) posts batches of 1,000 ticks over 100 symbols as fast as it is
   answered, ``--flood`` seconds.
2. K subscribers connect to ``/realtime/ticks`` (every symbol), from 1 process (K <= 100) or 2
   (plain asyncio, raw sockets, many connections each; ``python -m bench.sse _worker``).
3. **flow**: the Python generator posts ``--rate`` ticks/s (batches of 10 over 10 symbols) for
   ``--duration`` s. Tick-to-client delay = arrival wall clock - the event's ``committedAt``
   (set by the server when the flusher's commit returned, i.e. where the event enters the
   broadcaster), measured on ~50 sampled subscribers (same clock: one machine). Also reported:
   POST-to-client delay = arrival - ``ts``, the wall clock when the tick's request was written
   (adds the HTTP ingest and the commit). Events delivered/s counts every subscriber; delivered
   fraction = events / (ticks accepted x K).
4. **ingest, K subscribers**: step 1 again with the K subscribers connected.
5. **ingest, none again**: the subscribers closed, step 1 once more. The ratio is step 4 over the
   mean of steps 1 and 5 (which cancels drift, e.g. as the store fills), by wall clock and by
   ticks per server CPU-second (neighbours on a shared machine, the subscriber processes among
   them, move the first; the second is what the subscribers cost the server).

Run: ``python -m bench sse [--quick] [--runs N] [--subscribers 100,1000] [--rate 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time

from bench._proc import CpuMeter
from bench._results import fmt_summary, handle_termination, log, pcts, print_table, summary, write_result
from bench._server import Server
from bench._worker import Worker, run_worker
from bench.http import SYMBOLS, pick_generator, run_wrk, warm_up

FLOW_SYMBOLS = 10
FLOW_BATCH = 10
GRACE = 1.0  # seconds for the last events to arrive after the generator stops (quick: 0.5)


def flood(server: Server, generator: str, seconds: float, prefix: str) -> dict:
    if generator == "wrk":
        return run_wrk(server, batch=1000, conns=8, duration=seconds, prefix=prefix)
    out = run_worker("gen", {"host": server.host, "port": server.port, "conns": 8, "batch": 1000,
                             "symbols": SYMBOLS, "prefix": prefix, "duration": seconds, "server_pid": server.pid})
    out["generator"] = "python"
    return out


def merge_snaps(snaps: list[dict]) -> dict:
    lat = [x / 1e3 for s in snaps for x in s.pop("lat_ms", [])]
    post = [x / 1e3 for s in snaps for x in s.pop("post_lat_ms", [])]
    out = {k: sum(s[k] for s in snaps) for k in ("conns", "events", "resyncs", "conns_resynced", "conns_ended",
                                                   "sampled_conns")}
    out["events_min_per_conn"] = min(s["events_min_per_conn"] for s in snaps)
    out["events_max_per_conn"] = max(s["events_max_per_conn"] for s in snaps)
    out["latency"] = pcts(lat)
    out["post_latency"] = pcts(post)
    return out


def per_cpu(phase: dict) -> float | None:
    """Ticks accepted per server CPU-second."""
    cores = (phase.get("cpu") or {}).get("server_cores")
    return phase["rate"] / cores if cores else None


class _Subscription(asyncio.Protocol):
    """One SSE connection, parsed in ``data_received`` (no coroutine per read: the client side of
    1,000 connections stays cheap, so its own scheduling adds little to the delay it measures)."""

    def __init__(self, k: int, sample: bool, st: dict, hello, ended) -> None:
        self.k, self.sample, self.st, self.hello, self.ended = k, sample, st, hello, ended
        self.buf = b""
        self.head = True
        self.greeted = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.ended(self.k)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buf + data
        if self.head:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                self.buf = buf
                return
            status = buf[:buf.find(b"\r\n")]
            if b" 200 " not in status or b"chunked" not in buf[:i].lower():
                raise RuntimeError(f"SSE connect: {buf[:200]!r}")
            self.head, buf = False, buf[i + 4:]
        pos, n = 0, 0
        while True:  # complete HTTP chunks; each is whole SSE frames (one server write)
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol].split(b";")[0], 16)
            if size == 0:
                self.transport.close()
                break
            if len(buf) < eol + 2 + size + 2:
                break
            payload = buf[eol + 2:eol + 2 + size]
            pos = eol + 2 + size + 2
            events = payload.count(b"\n\nid: ") + payload.startswith(b"id: ")
            n += events
            if b"event: resync" in payload:
                self.st["resyncs"][self.k] += payload.count(b"event: resync")
            if not self.greeted and b'"ok":true' in payload:
                self.greeted = True
                self.hello()
            if self.sample and events:
                for frame in payload.split(b"\n\n"):
                    if frame.startswith(b"id: "):
                        ev = _loads(frame[frame.find(b"\ndata: ") + 7:])
                        self.st["post"].append(now - ev["ts"])
                        if "committedAt" in ev:
                            self.st["lat"].append(now - ev["committedAt"])
        self.buf = buf[pos:]
        if n:
            st = self.st
            st["events"][self.k] += n
            st["first"] = st["first"] or now
            st["last"] = now


def _loads(b: bytes):
    import orjson
    return orjson.loads(b)


async def _subscribers(p: dict) -> None:
    """A subscriber process (``python -m bench.sse _worker sse JSON``), timing each sampled event
    twice: arrival wall clock minus its ``committedAt`` (tick-to-client) and minus its ``ts``
    (POST-to-client, as the poster sets ts to its send time). Prints READY once every connection
    has its hello, then a JSON snapshot (counters reset) per stdin line; ``stop`` or EOF ends it."""
    host, port, conns = p["host"], p["port"], p["conns"]
    sample_every = max(1, p.get("sample_every", 1))
    st = {"events": [0] * conns, "resyncs": [0] * conns, "lat": [], "post": [], "first": None, "last": None}
    loop = asyncio.get_running_loop()
    greeted = [0]
    all_greeted = loop.create_future()
    ended: set[int] = set()
    commands: asyncio.Queue[str] = asyncio.Queue()
    request = (f"GET /realtime/ticks HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Accept: text/event-stream\r\n\r\n").encode()

    def hello() -> None:
        greeted[0] += 1
        if greeted[0] == conns and not all_greeted.done():
            all_greeted.set_result(None)

    transports = []
    gate = asyncio.Semaphore(50)  # the server's listen backlog is 100

    async def connect(k: int) -> None:
        async with gate:
            transport, _ = await loop.create_connection(
                lambda: _Subscription(k, k % sample_every == 0, st, hello, ended.add), host, port)
            transport.write(request)
            transports.append(transport)

    def snapshot() -> dict:
        ev, rs = st["events"], st["resyncs"]
        out = {"conns": conns, "events": sum(ev), "events_min_per_conn": min(ev), "events_max_per_conn": max(ev),
               "resyncs": sum(rs), "conns_resynced": sum(1 for r in rs if r), "conns_ended": len(ended),
               "latency": pcts(st["lat"]), "post_latency": pcts(st["post"]),
               "sampled_conns": len(range(0, conns, sample_every)), "first_event": st["first"],
               "last_event": st["last"], "lat_ms": [round(x * 1e3, 3) for x in st["lat"]],
               "post_lat_ms": [round(x * 1e3, 3) for x in st["post"]]}
        st.update(events=[0] * conns, resyncs=[0] * conns, lat=[], post=[], first=None, last=None)
        return out

    def on_stdin() -> None:
        line = sys.stdin.readline()
        commands.put_nowait(line.strip() if line else "stop")

    try:
        await asyncio.wait_for(asyncio.gather(*(connect(k) for k in range(conns))), 60)
        await asyncio.wait_for(all_greeted, 60)
        snapshot()  # the hellos are not events
        print("READY", flush=True)
        loop.add_reader(sys.stdin.fileno(), on_stdin)
        while True:
            cmd = await commands.get()
            print(json.dumps(snapshot()), flush=True)
            if cmd == "stop":
                break
        loop.remove_reader(sys.stdin.fileno())
    finally:
        for t in transports:
            t.close()


def one_run(k: int, *, rate: float, duration: float, flood_s: float, generator: str, tag: str,
            grace: float = GRACE) -> dict:
    procs = 1 if k <= 100 else 2
    shares = [k // procs + (1 if i < k % procs else 0) for i in range(procs)]
    sample_every = max(1, k // 50)
    with Server() as server:
        warm_up(server, tag)
        none = flood(server, generator, flood_s, f"{tag}-none")
        subs = [Worker("sse", {"host": server.host, "port": server.port, "conns": n, "sample_every": sample_every},
                       module="bench.sse") for n in shares]
        try:
            for w in subs:
                w.wait_ready(timeout=60 + k / 10)
            pids = {f"subscriber{i}": w.pid for i, w in enumerate(subs)}
            with CpuMeter(server=server.pid, **pids) as cpu:
                flow = run_worker("gen", {"host": server.host, "port": server.port, "conns": 2, "batch": FLOW_BATCH,
                                          "symbols": FLOW_SYMBOLS, "symbol_prefix": "F", "prefix": f"{tag}-flow",
                                          "duration": duration, "rate": rate})
                time.sleep(grace)
            got = merge_snaps([w.ask("mark") for w in subs])
            with CpuMeter(**pids) as flood_cpu:
                withk = flood(server, generator, flood_s, f"{tag}-with")
                time.sleep(grace)
            got_flood = merge_snaps([w.ask("stop") for w in subs])
        finally:
            for w in subs:
                w.close()
        time.sleep(grace)  # the server notices the closed streams
        after = flood(server, generator, flood_s, f"{tag}-after")
    expected = flow["accepted"] * k
    none_rate = (none["rate"] + after["rate"]) / 2
    none_cpu = (per_cpu(none) + per_cpu(after)) / 2 if per_cpu(none) and per_cpu(after) else None
    return {
        "subscribers": k, "subscriber_processes": procs,
        "flow": {"target_ticks_per_s": rate, "accepted": flow["accepted"], "elapsed": flow["elapsed"],
                 "post_latency": flow["latency"], "events": got["events"], "expected_events": expected,
                 "delivered_fraction": got["events"] / expected if expected else None,
                 "events_per_s": got["events"] / flow["elapsed"], "delay": got["latency"],
                 "post_delay": got["post_latency"], "subscribers": got, "cpu": cpu.result},
        "ingest_none": {"rate": none["rate"], "latency": none["latency"], "generator": none["generator"],
                        "cpu": none.get("cpu")},
        "ingest_none_after": {"rate": after["rate"], "latency": after["latency"], "cpu": after.get("cpu")},
        "ingest_none_mean": none_rate,
        "ingest_with": {"rate": withk["rate"], "latency": withk["latency"], "generator": withk["generator"],
                        "cpu": withk.get("cpu"), "subscriber_cpu": flood_cpu.result, "subscribers": got_flood},
        "ingest_ratio": withk["rate"] / none_rate if none_rate else None,
        "ingest_cpu_ratio": per_cpu(withk) / none_cpu if per_cpu(withk) and none_cpu else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench sse", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny: 10 subscribers, 1 run, short phases")
    ap.add_argument("--runs", type=int, default=None, help="runs per figure (default 3; quick 1)")
    ap.add_argument("--subscribers", default=None, help="K values, comma separated (default 100,1000; quick 10)")
    ap.add_argument("--rate", type=float, default=None, help="ticks/s during the flow phase (default 100; quick 50)")
    ap.add_argument("--duration", type=float, default=None, help="flow seconds (default 10; quick 1)")
    ap.add_argument("--flood", type=float, default=None, help="ingest phase seconds (default 5; quick 1)")
    ap.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                    help="generator of the ingest phases (the flow is always the paced Python one)")
    args = ap.parse_args(argv)
    handle_termination()
    started = time.perf_counter()
    runs = args.runs or (1 if args.quick else 3)
    ks = [int(x) for x in (args.subscribers or ("10" if args.quick else "100,1000")).split(",")]
    rate = args.rate or (50.0 if args.quick else 100.0)
    duration = args.duration or (1.0 if args.quick else 10.0)
    flood_s = args.flood or (1.0 if args.quick else 5.0)
    generator, gen_desc = pick_generator(args.generator)
    log(f"sse: K={ks}, flow {rate:g} ticks/s for {duration:g} s, ingest phases {flood_s:g} s ({gen_desc}), "
        f"{runs} run(s)")
    tag = secrets.token_hex(3)
    results = []
    for k in ks:
        rs = []
        for r in range(runs):
            o = one_run(k, rate=rate, duration=duration, flood_s=flood_s, generator=generator, tag=f"{tag}-{k}-{r}",
                        grace=0.5 if args.quick else GRACE)
            f = o["flow"]
            log(f"  K={k} run {r + 1}: {f['events_per_s']:,.0f} events/s ({f['delivered_fraction']:.1%} delivered, "
                f"{f['subscribers']['resyncs']} resyncs), delay p50 {f['delay'].get('p50_ms', float('nan')):.1f} "
                f"p99 {f['delay'].get('p99_ms', float('nan')):.1f} ms (POST-to-client p99 "
                f"{f['post_delay'].get('p99_ms', float('nan')):.1f}); ingest {o['ingest_none']['rate']:,.0f} / "
                f"{o['ingest_none_after']['rate']:,.0f} without, "
                f"{o['ingest_with']['rate']:,.0f} ticks/s with K (x{o['ingest_ratio']:.2f}; per server CPU-s "
                f"x{o['ingest_cpu_ratio'] or float('nan'):.2f}); cpu {f['cpu']}")
            rs.append(o)
        results.append({
            "subscribers": k,
            "events_per_s": summary([o["flow"]["events_per_s"] for o in rs]),
            "delivered_fraction": summary([o["flow"]["delivered_fraction"] for o in rs]),
            "delay_p50_ms": summary([o["flow"]["delay"].get("p50_ms") for o in rs]),
            "delay_p99_ms": summary([o["flow"]["delay"].get("p99_ms") for o in rs]),
            "post_delay_p99_ms": summary([o["flow"]["post_delay"].get("p99_ms") for o in rs]),
            "ingest_none_ticks_per_s": summary([o["ingest_none_mean"] for o in rs]),
            "ingest_with_ticks_per_s": summary([o["ingest_with"]["rate"] for o in rs]),
            "ingest_ratio": summary([o["ingest_ratio"] for o in rs]),
            "ingest_cpu_ratio": summary([o["ingest_cpu_ratio"] for o in rs]),
            "runs": rs,
        })
    rows = [[f"sse K={res['subscribers']}", fmt_summary(res["events_per_s"]),
             fmt_summary(res["delivered_fraction"], ".1%"), fmt_summary(res["delay_p50_ms"], ".1f"),
             fmt_summary(res["delay_p99_ms"], ".1f"), fmt_summary(res["post_delay_p99_ms"], ".1f"),
             fmt_summary(res["ingest_none_ticks_per_s"]), fmt_summary(res["ingest_with_ticks_per_s"]),
             fmt_summary(res["ingest_ratio"], ".2f"), fmt_summary(res["ingest_cpu_ratio"], ".2f")] for res in results]
    print_table(["scenario", "events/s", "delivered", "delay p50 ms", "delay p99 ms", "POST-to-client p99",
                 "ingest none", "ingest with K", "ratio", "ratio/CPU-s"], rows)
    write_result("sse", {"flow_rate": rate, "flow_symbols": FLOW_SYMBOLS, "flow_batch": FLOW_BATCH,
                         "flow_seconds": duration, "ingest_seconds": flood_s, "ingest_generator": gen_desc,
                         "ingest_batch": 1000, "ingest_symbols": SYMBOLS, "runs": runs, "store": "memory",
                         "subscription": "all symbols (no filter)",
                         "delay_definition": "subscriber arrival wall clock - the event's committedAt (server wall "
                                             "clock when the flusher's commit returned)",
                         "post_delay_definition": "subscriber arrival wall clock - tick ts, ts = wall clock when the "
                                                  "POST was written",
                         "cpu_ratio_definition": "ticks accepted per server CPU-second, with K / without",
                         "results": results}, quick=args.quick, started=started)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_worker"]:  # a subscriber process (Worker("sse", ..., module="bench.sse"))
        asyncio.run(_subscribers(json.loads(sys.argv[-1])))
        raise SystemExit(0)
    raise SystemExit(main())
