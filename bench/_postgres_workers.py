"""The workers of the postgres scenario, each in its own process: durable HTTP ingest, in-process engine, COPY, naive INSERT."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time

from bench._load import count_response, read_response
from bench._proc import CpuMeter
from bench._results import pcts
from bench._server import API_KEY
from bench._worker import run_worker

REQUEST_SIZE = 1_000
COPY_BATCH = 5_000


def make_rows(n: int, symbols: int, prefix: str, t0: float, seed: int = 7,
              rate: float = 150_000.0) -> list[tuple[str, str, float, float, float]]:
    """(key, symbol, price, ts, volume): unique keys, 100 symbols, timestamps from ``t0`` on at ``rate``."""
    rng = random.Random(seed)
    names = [f"SYM{i:03d}" for i in range(symbols)]
    rnd = rng.random
    pick = rng.randrange
    return [(f"{prefix}:{i}", names[pick(symbols)], round(100.0 + 10 * rnd(), 4), round(t0 + i / rate, 6),
             round(rnd(), 4)) for i in range(n)]


def latency(seconds: list[float]) -> dict:
    """``pcts`` of the latencies; {} when there are none (this scenario's layout)."""
    return pcts(seconds) if seconds else {}


async def _http_gen(p: dict) -> dict:
    """Raw HTTP/1.1 keep-alive POSTs of precomputed bodies from K connections (plain asyncio)."""
    try:
        import orjson
        dumps = orjson.dumps
    except ImportError:  # pragma: no cover
        def dumps(o):
            return json.dumps(o, separators=(",", ":")).encode()
    host, port = p["host"], p["port"]
    rows = make_rows(p["ticks"], p["symbols"], p["prefix"], time.time())
    requests = []
    head = (f"POST /api/v1/webhooks/ticks HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"x-api-key: {API_KEY}\r\n").encode()
    for i in range(0, len(rows), REQUEST_SIZE):
        items = [{"idempotencyKey": k, "symbol": s, "price": pr, "ts": ts, "volume": v}
                 for k, s, pr, ts, v in rows[i:i + REQUEST_SIZE]]
        body = dumps({"source": "bench", "items": items})
        requests.append((len(items), head + b"Content-Length: %d\r\n\r\n" % len(body) + body))
    del rows
    latencies: list[float] = []
    totals = {"sent": 0, "accepted": 0, "duplicates": 0, "errors": 0, "statuses": {}}
    deadline_box = [0.0]
    it = iter(requests)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for n, data in it:
                if time.perf_counter() > deadline_box[0]:
                    break
                t = time.perf_counter()
                writer.write(data)
                status, body, close = await read_response(reader)
                latencies.append(time.perf_counter() - t)
                totals["sent"] += n
                count_response(totals, totals["statuses"], status, body)
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    meter = CpuMeter(postgres=True, ndigits=None, **({"server": p["server_pid"]} if p.get("server_pid") else {}))
    ru0 = os.times()
    meter.start()
    started = time.perf_counter()
    deadline_box[0] = started + p["max_seconds"]
    await asyncio.gather(*(connection() for _ in range(p["conns"])))
    elapsed = time.perf_counter() - started
    cpu = meter.stop()
    ru1 = os.times()
    cpu["generator_cores"] = (ru1.user + ru1.system - ru0.user - ru0.system) / elapsed
    return {"elapsed": elapsed, "rate": totals["accepted"] / elapsed, **totals, "latency": latency(latencies), "cpu": cpu}


def _inproc(p: dict) -> dict:
    """Engine.submit from K trio tasks, PostgresStore inside trio_asyncio.open_loop()."""
    import trio
    import trio_asyncio

    from candlewick.config import Config
    from candlewick.engine import Engine
    from candlewick.schema import Tick

    rows = make_rows(p["ticks"], p["symbols"], p["prefix"], time.time())
    ticks = [Tick(*r) for r in rows]
    chunks = [ticks[i:i + REQUEST_SIZE] for i in range(0, len(ticks), REQUEST_SIZE)]
    out: dict = {}

    async def main() -> None:
        config = Config(feeder=False, api_keys=("x",), database_url=p["dsn"])
        async with trio_asyncio.open_loop():
            engine = Engine(config)
            async with trio.open_nursery() as nursery:
                await nursery.start(engine.run)
                symbols = sorted({t.symbol for t in ticks})
                # warm-up: every actor exists, the pool has a connection, the statements are prepared
                await engine.submit([Tick(f"{p['prefix']}:w:{s}", s, 1.0, ticks[0].ts, 0.0) for s in symbols])
                flushers = getattr(engine, "flushers", None) or [engine.flusher]  # lanes, or the one flusher
                flushes0 = sum(f.flushes for f in flushers)
                written0 = sum(f.ticks_written for f in flushers)
                latencies: list[float] = []
                accepted = 0
                meter = CpuMeter(postgres=True, ndigits=None)
                meter.start()
                ru0 = os.times()
                started = time.perf_counter()
                deadline = started + p["max_seconds"]

                async def client(k: int) -> None:
                    nonlocal accepted
                    for chunk in chunks[k::p["conns"]]:
                        if time.perf_counter() > deadline:
                            break
                        t = time.perf_counter()
                        receipt = await engine.submit(chunk)
                        latencies.append(time.perf_counter() - t)
                        accepted += receipt.accepted

                async with trio.open_nursery() as load:
                    for k in range(p["conns"]):
                        load.start_soon(client, k)
                elapsed = time.perf_counter() - started
                cpu = meter.stop()
                ru1 = os.times()
                cpu["engine_cores"] = (ru1.user + ru1.system - ru0.user - ru0.system) / elapsed
                flushes = sum(f.flushes for f in flushers) - flushes0
                written = sum(f.ticks_written for f in flushers) - written0
                out.update(elapsed=elapsed, rate=accepted / elapsed, accepted=accepted, sent=accepted,
                           latency=latency(latencies), cpu=cpu, flushes=flushes,
                           avg_flush_ticks=written / flushes if flushes else 0, warmup_ticks=len(symbols),
                           flush_lanes=len(flushers))
                engine.stop()

    trio.run(main)
    return out


async def _copy(p: dict) -> dict:
    import asyncpg

    rows = make_rows(p["ticks"], p["symbols"], p["prefix"], time.time())
    batches = [rows[i:i + COPY_BATCH] for i in range(0, len(rows), COPY_BATCH)]
    cols = ["idempotency_key", "symbol", "price", "ts", "volume"]
    cons = [await asyncpg.connect(p["dsn"]) for _ in range(p["writers"])]
    try:
        for con in cons:  # warm-up: type introspection for the table
            await con.copy_records_to_table(p["table"], records=rows[:1], columns=cols)
        await cons[0].execute(f"TRUNCATE {p['table']}")
        meter = CpuMeter(postgres=True, ndigits=None)
        meter.start()
        started = time.perf_counter()

        async def writer(k: int) -> None:
            for b in batches[k::len(cons)]:
                await cons[k].copy_records_to_table(p["table"], records=b, columns=cols)

        await asyncio.gather(*(writer(k) for k in range(len(cons))))
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        count = await cons[0].fetchval(f"SELECT count(*) FROM {p['table']}")
    finally:
        for con in cons:
            await con.close()
    return {"elapsed": elapsed, "rate": count / elapsed, "accepted": count, "sent": len(rows), "cpu": cpu}


async def _naive(p: dict) -> dict:
    import asyncpg

    rows = make_rows(p["ticks"], p["symbols"], p["prefix"], time.time())
    chunks = [rows[i:i + REQUEST_SIZE] for i in range(0, len(rows), REQUEST_SIZE)]

    def sql(n: int) -> str:
        values = ",".join(f"(${5 * i + 1},${5 * i + 2},${5 * i + 3},${5 * i + 4},${5 * i + 5})" for i in range(n))
        return (f"INSERT INTO naive_ticks (idempotency_key, symbol, price, ts, volume) VALUES {values} "
                "ON CONFLICT (idempotency_key) DO NOTHING")

    full = sql(REQUEST_SIZE)
    cons = [await asyncpg.connect(p["dsn"]) for _ in range(p["conns"])]
    latencies: list[float] = []
    accepted = 0
    try:
        meter = CpuMeter(postgres=True, ndigits=None)
        meter.start()
        started = time.perf_counter()
        deadline = started + p["max_seconds"]

        async def client(k: int) -> None:
            nonlocal accepted
            con = cons[k]
            for chunk in chunks[k::len(cons)]:
                if time.perf_counter() > deadline:
                    break
                t = time.perf_counter()
                status = await con.execute(full if len(chunk) == REQUEST_SIZE else sql(len(chunk)),
                                           *[x for r in chunk for x in r])
                latencies.append(time.perf_counter() - t)
                accepted += int(status.rsplit(" ", 1)[1])

        await asyncio.gather(*(client(k) for k in range(len(cons))))
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        # candles on read: the 1-minute OHLC of one symbol, then of all symbols, from the raw table
        candle_one = """SELECT floor(ts / 60) * 60 AS bucket, (array_agg(price ORDER BY ts))[1] AS open,
                max(price), min(price), (array_agg(price ORDER BY ts DESC))[1] AS close, sum(volume), count(*)
            FROM naive_ticks WHERE symbol = $1 GROUP BY 1 ORDER BY 1"""
        candle_all = """SELECT symbol, floor(ts / 60) * 60 AS bucket, (array_agg(price ORDER BY ts))[1] AS open,
                max(price), min(price), (array_agg(price ORDER BY ts DESC))[1] AS close, sum(volume), count(*)
            FROM naive_ticks GROUP BY 1, 2"""
        t = time.perf_counter()
        await cons[0].fetch(candle_one, rows[0][1])
        one_ms = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        await cons[0].fetch(candle_all)
        all_ms = (time.perf_counter() - t) * 1e3
    finally:
        for con in cons:
            await con.close()
    return {"elapsed": elapsed, "rate": accepted / elapsed, "accepted": accepted, "sent": accepted,
            "latency": latency(latencies), "cpu": cpu, "candles_on_read_ms": {"one_symbol": one_ms,
                                                                            "all_symbols": all_ms}}


def worker_main(kind: str, params: dict) -> None:
    if kind == "http":
        out = asyncio.run(_http_gen(params))
    elif kind == "inproc":
        out = _inproc(params)
    elif kind == "copy":
        out = asyncio.run(_copy(params))
    elif kind == "naive":
        out = asyncio.run(_naive(params))
    else:
        raise SystemExit(f"unknown worker {kind}")
    print(json.dumps(out))



def run_pg_worker(kind: str, params: dict, timeout: float = 600.0) -> dict:
    """One of these workers in its own process (``python -m bench.postgres _worker KIND JSON``), to
    its end; what it wrote to stderr is logged."""
    return run_worker(kind, params, timeout, module="bench.postgres", echo_stderr=True)
