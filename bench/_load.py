"""Load workers of the benchmark harness: ``python -m bench._load gen|read JSON`` posts ticks or times reads."""

# Plain asyncio over raw HTTP/1.1 keep-alive sockets (not trio, never trio-asyncio), so the client side
# stays cheap and separate from the server's CPU; each prints one JSON line and is run by
# ``bench._worker.Worker``. ``gen`` posts batches of ticks with unique idempotency keys (as fast as
# it is answered, or paced at a rate), ``read`` times GETs.

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time

from bench._proc import CpuMeter
from bench._results import pcts
from bench._server import API_KEY


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server closes) of one response; Content-Length or chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, chunked, close = None, False, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            close = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    elif length is not None:
        body = await reader.readexactly(length) if length else b""
    else:
        body = await reader.read()
        close = True
    return status, body, close


def count_response(totals: dict, statuses: dict[str, int], status: int, body: bytes, who: str = "") -> None:
    """Add one response to a generator's figures: its status, and from a 202 the counts it reports
    (those ``totals`` keeps: accepted, duplicates, skipped); any other is an error, the first
    three shown on stderr."""
    statuses[str(status)] = statuses.get(str(status), 0) + 1
    if status == 202:
        r = json.loads(body)
        for k in ("accepted", "duplicates", "skipped"):
            if k in totals:
                totals[k] += r.get(k, 0)
    else:
        totals["errors"] += 1
        if totals["errors"] <= 3:
            print(f"{who}HTTP {status}: {body[:300]!r}", file=sys.stderr)


def symbol_names(n: int, prefix: str = "B") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


TS_MARK = b"T" * 17  # "%17.6f" of an epoch second: 10 digits, a point, 6 digits
KEY_MARK = b"@" * 12


def batch_template(batch: int, symbols: list[str], prefix: str, offset: int = 0) -> bytes:
    """A tick body with fixed-width placeholders for the request number and the trade time."""
    items = []
    for i in range(batch):
        sym = symbols[(offset + i) % len(symbols)]
        price = 100.0 + ((offset + i) * 7919 % 10_000) / 100
        items.append(b'{"idempotencyKey":"%s-%s-%d","symbol":"%s","price":%.2f,"ts":%s,"volume":%.3f}'
                     % (prefix.encode(), KEY_MARK, i, sym.encode(), price, TS_MARK, 0.5 + (i % 7) / 10))
    return b'{"source":"bench","items":[' + b",".join(items) + b"]}"


async def _gen(p: dict) -> dict:
    """POST batches from ``conns`` keep-alive connections for ``duration`` s (or ``requests`` in all).

    Closed loop (each connection sends its next request when the previous is answered) unless
    ``rate`` (ticks/s) is given: then requests leave on a fixed schedule, and latency counts from
    the scheduled start (so a stall is not hidden by the client waiting: no coordinated omission).
    Every tick's ``ts`` is the wall clock when its request is written; keys are unique per request.
    """
    host, port, conns, batch = p["host"], p["port"], p["conns"], p["batch"]
    symbols = symbol_names(p["symbols"], p.get("symbol_prefix", "B"))
    prefix = p["prefix"]
    # one template per run of `batch` symbols, taken in turn, so every symbol gets ticks
    templates = [batch_template(batch, symbols, prefix, offset=j * batch)
                 for j in range(max(1, -(-len(symbols) // batch)))]
    heads = [(f"POST /api/v1/webhooks/ticks HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
              f"x-api-key: {API_KEY}\r\nContent-Length: {len(tpl)}\r\n\r\n").encode() for tpl in templates]
    rate = p.get("rate")
    max_requests = p.get("requests")
    interval = conns * batch / rate if rate else 0.0
    latencies: list[float] = []
    service: list[float] = []
    tot = {"requests": 0, "sent_ticks": 0, "accepted": 0, "duplicates": 0, "skipped": 0, "errors": 0}
    statuses: dict[str, int] = {}
    counter = [0]
    lateness: list[float] = []  # how far behind schedule requests left (paced mode)

    async def connection(k: int, t0: float, stop_at: float) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        sent = 0
        try:
            while True:
                scheduled = t0 + (sent + k / conns) * interval if rate else None
                now = time.perf_counter()
                if scheduled is not None and scheduled > now:
                    if scheduled >= stop_at:
                        break
                    await asyncio.sleep(scheduled - now)
                if time.perf_counter() >= stop_at and scheduled is None:
                    break
                if max_requests is not None and counter[0] >= max_requests:
                    break
                counter[0] += 1
                n = counter[0]
                start = time.perf_counter()
                tpl, head = templates[n % len(templates)], heads[n % len(templates)]
                body = tpl.replace(KEY_MARK, b"%012d" % n).replace(TS_MARK, b"%17.6f" % time.time())
                writer.write(head + body)
                status, resp, close = await read_response(reader)
                end = time.perf_counter()
                sent += 1
                latencies.append(end - (scheduled if scheduled is not None else start))
                service.append(end - start)
                if scheduled is not None:
                    lateness.append(start - scheduled)
                tot["requests"] += 1
                tot["sent_ticks"] += batch
                count_response(tot, statuses, status, resp, who="gen: ")
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                if scheduled is not None and time.perf_counter() >= stop_at:
                    break
        finally:
            writer.close()

    ru0 = os.times()
    with CpuMeter(**({"server": p["server_pid"]} if p.get("server_pid") else {})) as cpu:
        t0 = time.perf_counter()
        stop_at = t0 + p.get("duration", 1e9)
        await asyncio.gather(*(connection(k, t0, stop_at) for k in range(conns)))
        elapsed = time.perf_counter() - t0
    ru1 = os.times()
    out = {**tot, "statuses": statuses, "elapsed": elapsed, "rate": tot["accepted"] / elapsed if elapsed else 0.0,
           "latency": pcts(latencies), "service": pcts(service), "cpu": cpu.result}
    out["cpu"]["generator_cores"] = round((ru1.user + ru1.system - ru0.user - ru0.system) / elapsed, 3)
    if rate:
        out["target_rate"] = rate
        out["behind_schedule"] = pcts(lateness)
    return out


async def _read(p: dict) -> dict:
    """Time GETs of ``paths`` (templates with ``{sym}``) over ``symbols`` from ``conns`` connections."""
    host, port = p["host"], p["port"]
    symbols = p["symbols"]
    paths: dict[str, str] = p["paths"]
    lat: dict[str, list[float]] = {k: [] for k in paths}
    statuses: dict[str, int] = {}
    rng = random.Random(p.get("seed", 1))

    async def connection(k: int, stop_at: float) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        names = list(paths)
        i = k
        try:
            while time.perf_counter() < stop_at:
                label = names[i % len(names)]
                i += 1
                path = paths[label].format(sym=rng.choice(symbols))
                t = time.perf_counter()
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
                status, _, close = await read_response(reader)
                lat[label].append(time.perf_counter() - t)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(connection(k, t0 + p["duration"]) for k in range(p["conns"])))
    elapsed = time.perf_counter() - t0
    return {"elapsed": elapsed, "statuses": statuses, "latency": {k: pcts(v) for k, v in lat.items()},
            "requests_per_s": sum(len(v) for v in lat.values()) / elapsed}



WORKERS = {"gen": _gen, "read": _read}


def main(argv: list[str]) -> int:
    kind, params = argv[0], json.loads(argv[1])
    print(json.dumps(asyncio.run(WORKERS[kind](params))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
