"""Scale-out over the real Redis and Postgres: processes share idempotency, fan-out and shards.

Every process here is a real ``candlewick run`` child on loopback; they meet only through
Redis (claims, pub/sub, streams, leases) and Postgres.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time

import httpx
import trio

from tests.conftest import API_KEY, REDIS_URL, free_port, server_process
from tests.e2e.test_sse import SSEReader
from tests.integration.test_pg_faults import (
    T0,
    assert_aggregates_match_raw,
    assert_candles_equal,
    assert_raw_is_exactly,
    make_ticks,
    reference_candles,
    sql,
)

TICKS_PATH = "/api/v1/webhooks/ticks"
HEADERS = {"x-api-key": API_KEY}
SHARDS = 4


def cluster_env(pg_url: str, prefix: str, redis_url: str = REDIS_URL, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": pg_url, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "REDIS_CHANNEL": prefix + "ch",
            "SHARDS": str(SHARDS), "LEASE_TTL": "1.5", **extra}


async def get_json(http: httpx.AsyncClient, url: str) -> dict:
    r = await http.get(url)
    assert r.status_code == 200, r.text
    return r.json()


def bus_node(tree: dict) -> dict:
    return next(c for c in tree["children"] if c["name"] == "bus")


async def test_two_all_processes_count_each_tick_once(aio, pg_url, redis_prefix, tmp_path):
    """The same batches posted to two processes at once, then retried to both: each tick is
    accepted exactly once across them, stored once, and both serve the same correct candles."""
    ticks = make_ticks(random.Random(44), ["A1", "A2", "A3", "A4", "A5"], 240, 3.0, "two")
    batches = [ticks[i:i + 60] for i in range(0, len(ticks), 60)]
    env = cluster_env(pg_url, redis_prefix)
    with server_process(tmp_path, "--no-feeder", env=env) as a, server_process(tmp_path, "--no-feeder", env=env) as b:
        receipts: list[dict] = []
        async with httpx.AsyncClient(timeout=30) as http:
            async def post(base: str, batch: list[dict]) -> None:
                r = await http.post(base + TICKS_PATH, json={"source": "two", "items": batch}, headers=HEADERS)
                assert r.status_code == 202, r.text
                receipts.append(r.json())

            for _round in range(2):  # the first round races the two processes, the second is a retry
                async with trio.open_nursery() as nursery:
                    for batch in batches:
                        nursery.start_soon(post, a.base_url, batch)
                        nursery.start_soon(post, b.base_url, batch)
            assert sum(r["accepted"] for r in receipts) == len(ticks)
            assert sum(r["duplicates"] for r in receipts) == 3 * len(ticks)

            await assert_raw_is_exactly(pg_url, ticks)
            await assert_aggregates_match_raw(pg_url)
            want = reference_candles(ticks)
            for base in (a.base_url, b.base_url):
                for sym, candles in want.items():
                    got = (await get_json(http, base + f"/api/v1/ticks/{sym}/history?view=ohlc1m&limit=500"))["items"]
                    assert_candles_equal(sym, got, candles)


async def test_sharded_deployment_exactly_once_in_order_with_a_worker_killed(aio, pg_url, redis_prefix, tmp_path):
    """ingest + two workers + gateway: 50 symbols' ticks land in Postgres exactly once and in order
    per symbol although one worker is SIGKILLed mid-stream; the gateway's SSE client sees every tick
    exactly once, with increasing ids and in trade-time order per symbol: what the dead worker
    committed but had not published goes out from the SSE outbox before its shards move on."""
    symbols = [f"S{i:02d}" for i in range(50)]
    per_symbol = 120
    ticks = [{"idempotencyKey": f"sh:{s}:{k}", "symbol": s, "price": round(100 + ((k * 7 + j) % 23) * 0.5, 2),
              "ts": T0 + k * 2 + 0.125, "volume": 1.0}
             for k in range(per_symbol) for j, s in enumerate(symbols)]  # trade time rises per symbol
    batches = [ticks[i:i + 250] for i in range(0, len(ticks), 250)]
    env = cluster_env(pg_url, redis_prefix)
    with server_process(tmp_path, "--no-feeder", "--role", "worker", env=env) as w1, \
            server_process(tmp_path, "--no-feeder", "--role", "worker", env=env) as w2, \
            server_process(tmp_path, "--no-feeder", "--role", "gateway",
                           env={**env, "SSE_QUEUE_CAPACITY": "50000"}) as gw, \
            server_process(tmp_path, "--no-feeder", "--role", "ingest", env=env) as ing:
        async with httpx.AsyncClient(timeout=30) as http:
            async def owned(w) -> list[int]:
                return bus_node(await get_json(http, w.base_url + "/ops/health/supervisor"))["shards"]["owned"]

            with trio.fail_after(20):  # the two workers split the shards between them
                while True:
                    o1, o2 = await owned(w1), await owned(w2)
                    if o1 and o2 and sorted(o1 + o2) == list(range(SHARDS)):
                        break
                    await trio.sleep(0.1)
            killed_shards = set(o1)

            events: list[dict] = []
            async with trio.open_nursery() as nursery:
                response = await http.send(http.build_request("GET", gw.base_url + "/realtime/ticks"), stream=True)
                reader = SSEReader(response)

                resyncs: list[dict] = []

                async def listen() -> None:
                    while True:
                        ev = await reader.next_event()
                        if ev.get("event") == "resync":
                            resyncs.append(ev)
                        elif "data" in ev and ev.get("event", "message") == "message" and "id" in ev:
                            events.append(ev)
                nursery.start_soon(listen)

                accepted = 0
                for i, batch in enumerate(batches):
                    if i == len(batches) // 3:
                        w1.proc.send_signal(signal.SIGKILL)
                        w1.proc.wait()
                    r = await http.post(ing.base_url + TICKS_PATH, json={"source": "sh", "items": batch},
                                        headers=HEADERS)
                    assert r.status_code == 202, r.text
                    accepted += r.json()["accepted"]
                assert accepted == len(ticks)

                with trio.fail_after(60):  # w2 takes over w1's shards and drains every stream
                    while (await sql(pg_url, "SELECT count(*) FROM ticks_raw"))[0][0] < len(ticks):
                        await trio.sleep(0.2)
                assert sorted(await owned(w2)) == list(range(SHARDS))
                lag = bus_node(await get_json(http, w2.base_url + "/ops/health/supervisor"))["shards"]["lag"]
                assert sorted(lag) == [str(s) for s in range(SHARDS)]
                with trio.move_on_after(5):  # the last flush's events reach the gateway
                    while len(events) < len(ticks):
                        await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
            await response.aclose()

        await assert_raw_is_exactly(pg_url, ticks)
        await assert_aggregates_match_raw(pg_url)
        rows = await sql(pg_url, "SELECT symbol, ts FROM ticks ORDER BY symbol, seq")
        by_symbol: dict[str, list[float]] = {}
        for r in rows:
            by_symbol.setdefault(r["symbol"], []).append(r["ts"])
        out_of_order = [s for s, ts in by_symbol.items() if ts != sorted(ts)]
        assert not out_of_order, f"stored out of trade-time order for {out_of_order[:5]}"

        assert not resyncs, f"the gateway resynced its subscriber: {resyncs}"
        ids = [int(e["id"]) for e in events]
        assert ids == sorted(set(ids)), "SSE ids must strictly increase"
        import json
        seen = [(d["symbol"], d["ts"]) for d in (json.loads(e["data"]) for e in events)]
        assert len(seen) == len(set(seen)), "an SSE subscriber saw a tick twice"
        missing = {(t["symbol"], t["ts"]) for t in ticks} - set(seen)
        assert not missing, f"{len(missing)} ticks missing from SSE, e.g. {sorted(missing)[:3]}"
        sse_by_symbol: dict[str, list[float]] = {}
        for symbol, ts in seen:
            sse_by_symbol.setdefault(symbol, []).append(ts)
        unordered = [s for s, ts in sse_by_symbol.items() if ts != sorted(ts)]
        assert not unordered, f"SSE events out of trade-time order for {unordered[:5]}"
        print(f"\n[sharded] {len(ticks)} ticks, {len(events)} SSE events, killed worker owned {sorted(killed_shards)}")


async def test_ingest_answers_503_while_redis_is_down_and_recovers(aio, pg_url, tmp_path):
    """With its Redis gone, ingest refuses with 503 REDIS_UNAVAILABLE and Retry-After (nothing
    accepted that cannot be delivered) and readiness says redis: fail; when Redis is back, it accepts again."""
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    def start_redis() -> subprocess.Popen:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)  # polling a child process for readiness, with a deadline
        return proc

    redis = start_redis()
    env = cluster_env(pg_url, "down:", redis_url=f"redis://127.0.0.1:{port}/0")
    try:
        with server_process(tmp_path, "--no-feeder", "--role", "ingest", env=env) as ing:
            async with httpx.AsyncClient(timeout=30) as http:
                async def post(tag: str) -> httpx.Response:
                    items = [{"idempotencyKey": f"{tag}-{i}", "symbol": "RD", "price": 10.0 + i, "ts": T0 + i}
                             for i in range(20)]
                    return await http.post(ing.base_url + TICKS_PATH, json={"source": "rd", "items": items},
                                           headers=HEADERS)

                assert (await post("up")).status_code == 202
                redis.terminate()
                redis.wait()
                r = await post("down")
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "REDIS_UNAVAILABLE"
                assert int(r.headers["retry-after"]) >= 1
                ready = await http.get(ing.base_url + "/health/readiness")
                assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "fail"

                redis = start_redis()
                with trio.fail_after(20):
                    while (r := await post("down")).status_code != 202:
                        assert r.status_code == 503, r.text
                        await trio.sleep(0.2)
                assert r.json()["accepted"] == 20  # the refused request is applied on its retry
                ready = await http.get(ing.base_url + "/health/readiness")
                assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok"
    finally:
        redis.terminate()
        redis.wait()


async def test_ingest_refuses_when_workers_fall_behind_and_releases_its_claims(aio, pg_url, redis_prefix, tmp_path):
    """With no worker draining, a full shard backlog makes ingest answer 503 OVERLOADED (memory
    stays bounded); the refused ticks' keys are not spent, so once a worker drains, the retry is applied."""
    env = cluster_env(pg_url, redis_prefix, SHARDS="1", STREAM_MAX_BACKLOG="3")
    items = lambda tag: [{"idempotencyKey": f"{tag}-{i}", "symbol": "BK", "price": 5.0 + i, "ts": T0 + i}  # noqa: E731
                         for i in range(10)]
    with server_process(tmp_path, "--no-feeder", "--role", "ingest", env=env) as ing:
        async with httpx.AsyncClient(timeout=30) as http:
            async def post(tag: str) -> httpx.Response:
                return await http.post(ing.base_url + TICKS_PATH, json={"source": "bk", "items": items(tag)},
                                       headers=HEADERS)

            for tag in ("a", "b", "c"):
                assert (await post(tag)).status_code == 202
            r = await post("d")
            assert r.status_code == 503 and r.json()["error"]["code"] == "OVERLOADED", r.text
            assert "retry-after" in r.headers
            with server_process(tmp_path, "--no-feeder", "--role", "worker", env=env):
                with trio.fail_after(30):
                    while (r := await post("d")).status_code != 202:
                        await trio.sleep(0.2)
                assert r.json()["accepted"] == 10, r.json()
                with trio.fail_after(30):
                    while (await sql(pg_url, "SELECT count(*) FROM ticks_raw"))[0][0] < 40:
                        await trio.sleep(0.1)
    await assert_aggregates_match_raw(pg_url)
