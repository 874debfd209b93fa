"""Faults against the real Postgres: connections killed under flushes, and a SIGKILLed engine.

Both tests check the one promise that matters under faults: every tick the clients were told
was accepted is stored exactly once, and the aggregates (``ohlc_1m``, the rollups in
``ohlc_rollups`` and the API's candles with SMA10) equal a recomputation from the raw ticks -
nothing lost, nothing counted twice, however the retries interleaved with the faults.
"""

from __future__ import annotations

import math
import random
import time

import asyncpg
import httpx
import pytest
import trio
from trio_asyncio import aio_as_trio

from tests.conftest import API_KEY, PG_ADMIN, server_process, start_live_server, stored_key

T0 = (int(time.time()) // 3600 - 3) * 3600
"""An hour boundary three hours ago: within raw retention (ticks older than it are not stored raw), no
tick in the future, every tick within the lateness horizon of the others."""
TICKS_PATH = "/api/v1/webhooks/ticks"
HEADERS = {"x-api-key": API_KEY}
REL = 1e-9  # float sums accumulated in different orders


# -- helpers ---------------------------------------------------------------------------------------

async def terminate_backends(admin, dbname: str) -> int:
    """``pg_terminate_backend`` on every connection to ``dbname`` but ``admin``'s own; how many went."""
    rows = await aio_as_trio(admin.fetch)(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        dbname)
    return sum(1 for r in rows if r[0])


async def sql(url: str, query: str, *args):
    """One query on a fresh connection, as one asyncio coroutine run through trio-asyncio."""

    async def run():
        con = await asyncpg.connect(url, timeout=10)
        try:
            return await con.fetch(query, *args)
        finally:
            await con.close()

    return await aio_as_trio(run)()


def make_ticks(rng: random.Random, symbols: list[str], per_symbol: int, spacing: float, tag: str) -> list[dict]:
    """Unique keys; per symbol a distinct trade time each (no ties), spread over several minutes.

    Times are T0 + k*spacing + 1/8: exact binary fractions never near a minute boundary, so
    Python's ``ts // 60`` and SQL's ``floor(ts / 60)`` agree on every bucket.
    """
    out = []
    for s in symbols:
        base = rng.uniform(20, 2000)
        for k in range(per_symbol):
            out.append({"idempotencyKey": f"{tag}:{s}:{k}", "symbol": s,
                        "price": round(base * rng.uniform(0.9, 1.1), 2),
                        "ts": T0 + k * spacing + 0.125, "volume": round(rng.uniform(0, 5), 3)})
    rng.shuffle(out)  # batches mix symbols and arrive out of trade-time order
    return out


RECOMPUTE = """
WITH t AS (SELECT symbol, (floor(ts / 60) * 60)::bigint AS b, price, ts, volume, seq FROM ticks)
SELECT symbol, b,
       (array_agg(price ORDER BY ts, seq))[1] AS open, min(ts) AS open_ts,
       max(price) AS high, min(price) AS low,
       (array_agg(price ORDER BY ts DESC, seq DESC))[1] AS close, max(ts) AS close_ts,
       count(*) AS count, sum(volume) AS volume, sum(price) AS psum, sum(price * volume) AS pv
FROM t GROUP BY symbol, b"""

STORED_1M = "SELECT s.symbol, o.* FROM ohlc_1m o JOIN symbols s ON s.id = o.symbol_id"
STORED_ROLLUPS = "SELECT s.symbol, o.* FROM ohlc_rollups o JOIN symbols s ON s.id = o.symbol_id"
FIELDS = ("open", "open_ts", "high", "low", "close", "close_ts", "count", "volume", "psum", "pv")
EXACT = 7  # open .. count compare exactly; the sums to REL (added in other groupings)


def differences(key, got, want) -> list[tuple]:
    """The fields of a stored bar that differ from a recomputed one."""
    out = [(key, f, got[f], want[f]) for f in FIELDS[:EXACT] if got[f] != want[f]]
    return out + [(key, f, got[f], want[f]) for f in FIELDS[EXACT:]
                  if not math.isclose(got[f], want[f], rel_tol=REL, abs_tol=1e-9)]


async def assert_aggregates_match_raw(url: str) -> int:
    """ohlc_1m equals a recomputation from ticks_raw, and every rollup (5m .. 1w) a rollup of
    ohlc_1m; returns the number of 1m buckets."""
    ref = {(r["symbol"], r["b"]): r for r in await sql(url, RECOMPUTE)}
    ohlc = {(r["symbol"], r["bucket_start"]): r for r in await sql(url, STORED_1M)}
    assert set(ohlc) == set(ref), f"ohlc_1m buckets differ: extra {set(ohlc) - set(ref)}, missing {set(ref) - set(ohlc)}"
    bad = [d for key, r in ref.items() for d in differences(key, ohlc[key], r)]
    assert not bad, f"{len(bad)} aggregate fields differ from ticks_raw, e.g. {bad[:5]}"
    await assert_rollups_match_1m(url)
    return len(ref)


async def assert_rollups_match_1m(url: str) -> None:
    """Every stored rollup equals the merge of its 1m bars (the candle rule), none missing, none extra."""
    from candlewick.schema import Bar

    minutes = sorted(await sql(url, STORED_1M), key=lambda r: (r["symbol"], r["bucket_start"]))
    stored = {(r["symbol"], r["interval"], r["bucket_start"]): r for r in await sql(url, STORED_ROLLUPS)}
    want: dict[tuple, Bar] = {}
    for r in minutes:
        for interval in (300, 900, 3_600, 14_400, 86_400, 604_800):
            offset = 345_600 if interval == 604_800 else 0
            b = r["bucket_start"] - (r["bucket_start"] - offset) % interval
            bar = Bar.__new__(Bar)
            (bar.open, bar.open_ts, bar.high, bar.low, bar.close, bar.close_ts, bar.count, bar.volume, bar.psum,
             bar.pv) = (r[f] for f in FIELDS)
            bar.bucket = b
            key = (r["symbol"], interval, b)
            if key in want:
                want[key].merge(bar)
            else:
                want[key] = bar
    assert set(stored) == set(want), f"rollups differ: extra {set(stored) - set(want)}, missing {set(want) - set(stored)}"
    bad = [d for key, bar in want.items() for d in differences(key, stored[key], {f: getattr(bar, f) for f in FIELDS})]
    assert not bad, f"{len(bad)} rollup fields differ from the 1m bars, e.g. {bad[:5]}"


async def assert_raw_is_exactly(url: str, ticks: list[dict]) -> None:
    """ticks_raw holds each posted tick exactly once, with the values posted."""
    rows = await sql(url, "SELECT idempotency_key, symbol, price, ts, volume FROM ticks")
    stored = {r["idempotency_key"]: (r["symbol"], r["price"], r["ts"], r["volume"]) for r in rows}
    want = {stored_key(t["idempotencyKey"]): (t["symbol"], float(t["price"]), float(t["ts"]), float(t["volume"])) for t in ticks}
    assert len(rows) == len(want), f"ticks_raw has {len(rows)} rows, {len(want)} unique ticks were posted"
    missing, extra = set(want) - set(stored), set(stored) - set(want)
    assert not missing and not extra, f"missing {len(missing)} (e.g. {sorted(missing)[:3]}), extra {len(extra)}"
    differ = [k for k in want if stored[k] != want[k]]
    assert not differ, f"{len(differ)} stored ticks differ from what was posted, e.g. {differ[:3]}"


# -- 1. connections killed while flushes are under way ---------------------------------------------
async def test_connection_kills_during_flushes_lose_and_double_nothing(nursery, aio, pg_url):
    """pg_terminate_backend at random moments under concurrent ingest: every acknowledged tick is
    stored once, the aggregates equal a recomputation, and the flusher really saw the faults."""
    rng = random.Random(20241101)
    symbols = [f"F{i:02d}" for i in range(20)]
    clients, requests_per_client, per_request = 4, 60, 40
    total = clients * requests_per_client * per_request  # 9,600 ticks, 480 per symbol over 10 minutes
    ticks = make_ticks(rng, symbols, total // len(symbols), 1.25, "f")
    batches = [ticks[i:i + per_request] for i in range(0, total, per_request)]

    live = await start_live_server(nursery, database_url=pg_url, ack_deadline=10)
    dbname = pg_url.rsplit("/", 1)[1]
    stats = {"requests": 0, "retries_503": 0, "transport_retries": 0, "kills": 0, "terminated": 0,
             "accepted": 0, "duplicates": 0}
    acknowledged: set[str] = set()
    done = trio.Event()

    async def client(n: int, mine: list[list[dict]], http: httpx.AsyncClient) -> None:
        for batch in mine:
            for attempt in range(100):
                stats["requests"] += 1
                try:
                    r = await http.post(live.url(TICKS_PATH), json={"source": "faults", "items": batch},
                                        headers=HEADERS)
                except httpx.TransportError:
                    stats["transport_retries"] += 1
                    continue
                if r.status_code == 202:
                    body = r.json()
                    stats["accepted"] += body["accepted"]
                    stats["duplicates"] += body["duplicates"]
                    assert body["skipped"] == 0 and body["rejected"] == 0, body
                    acknowledged.update(t["idempotencyKey"] for t in batch)
                    break
                assert r.status_code == 503, (r.status_code, r.text)
                assert r.json()["error"]["code"] in ("STORE_UNAVAILABLE", "ACTOR_RESTARTED", "OVERLOADED"), r.text
                stats["retries_503"] += 1
                await trio.sleep(min(0.02 * (attempt + 1), 0.2))  # client backoff, not synchronisation
            else:
                pytest.fail(f"client {n}: a batch never got 202 in 100 attempts; {stats}")

    async def killer() -> None:
        admin = await aio_as_trio(asyncpg.connect)(PG_ADMIN, timeout=10)
        try:
            while not done.is_set() and stats["kills"] < 300:
                with trio.move_on_after(rng.uniform(0.01, 0.08)):  # a random moment, not synchronisation
                    await done.wait()
                if done.is_set():
                    break
                stats["kills"] += 1
                stats["terminated"] += await terminate_backends(admin, dbname)
        finally:
            await aio_as_trio(admin.close)()

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=30.0) as http:
        async with trio.open_nursery() as inner:
            inner.start_soon(killer)
            async with trio.open_nursery() as posters:
                for n in range(clients):
                    posters.start_soon(client, n, batches[n::clients], http)
            done.set()
        ingest_s = time.monotonic() - started
        health = (await http.get(live.url("/ops/health/supervisor"))).json()

    engine = live.engine
    flushers = list(getattr(engine, "flushers", None) or [engine.flusher])  # one flusher, or one per lane
    flushes = sum(f.flushes for f in flushers)
    failures = sum(f.failures for f in flushers)
    dropped = sum(f.dropped for f in flushers)
    figures = (f"ticks={total} requests={stats['requests']} 503-retries={stats['retries_503']} "
               f"transport-retries={stats['transport_retries']} kills={stats['kills']} "
               f"backends-terminated={stats['terminated']} flushers={len(flushers)} flushes={flushes} "
               f"failures={failures} dropped={dropped} accepted={stats['accepted']} "
               f"duplicates={stats['duplicates']} ingest={ingest_s:.1f}s "
               f"fast-path-writes={engine.store.fast_writes} exact-path-writes={engine.store.exact_writes}")
    print("\n[pg faults] " + figures)

    assert acknowledged == {t["idempotencyKey"] for t in ticks}, figures
    assert flushes >= 100, f"too few flushes to exercise the faults: {figures}"
    assert stats["terminated"] > 0, f"no backend was ever terminated: {figures}"
    assert failures > 0, f"no kill hit a flush: {figures}"
    nodes = [a for a in _walk(health) if str(a.get("name", "")).startswith("flusher")]
    assert nodes and sum(a["failures"] for a in nodes) == failures, (nodes, figures)  # /ops/health/supervisor too
    # Every tick was acknowledged once as accepted; retried ones that had committed come back as duplicates.
    assert stats["accepted"] <= total, figures
    assert stats["accepted"] + stats["duplicates"] >= total, figures

    await assert_raw_is_exactly(pg_url, ticks)
    buckets = await assert_aggregates_match_raw(pg_url)
    assert buckets == len(symbols) * 10, figures  # 480 ticks x 1.25 s = 10 minutes per symbol
    print(f"[pg faults] raw ticks = {total}, buckets = {buckets}: all match")

    await live.client.aclose()
    live.running.stop()
    with trio.fail_after(15):
        await live.engine.wait_stopped()


def _walk(node):
    """Every dict in a JSON tree (the supervisor tree's shape is not this test's business)."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


# -- 2. the engine SIGKILLed mid-ingest, then everything replayed -----------------------------------
def reference_candles(ticks: list[dict]) -> dict[str, list[dict]]:
    """Candles computed independently from the unique ticks: OHLC by trade time, SMA10 of closes."""
    by = {}
    for t in sorted(ticks, key=lambda t: t["ts"]):
        b = int(t["ts"] // 60) * 60
        c = by.setdefault(t["symbol"], {}).get(b)
        if c is None:
            by[t["symbol"]][b] = {"ts": b, "open": t["price"], "high": t["price"], "low": t["price"],
                                  "close": t["price"], "volume": t["volume"], "count": 1}
        else:
            c["high"] = max(c["high"], t["price"])
            c["low"] = min(c["low"], t["price"])
            c["close"] = t["price"]
            c["volume"] += t["volume"]
            c["count"] += 1
    out = {}
    for sym, buckets in by.items():
        candles = [buckets[b] for b in sorted(buckets)]
        for i, c in enumerate(candles):
            c["sma10"] = None if i < 9 else sum(x["close"] for x in candles[i - 9:i + 1]) / 10
        out[sym] = candles
    return out


def assert_candles_equal(sym: str, got: list[dict], want: list[dict]) -> None:
    assert [c["ts"] for c in got] == [c["ts"] for c in want], f"{sym}: candle buckets differ"
    for g, w in zip(got, want, strict=True):
        where = f"{sym} candle {g['ts']}"
        assert (g["symbol"], g["open"], g["high"], g["low"], g["close"], g["count"]) == \
            (sym, w["open"], w["high"], w["low"], w["close"], w["count"]), (where, g, w)
        assert g["volume"] == pytest.approx(w["volume"], rel=REL), (where, g, w)
        if w["sma10"] is None:
            assert g["sma10"] is None, (where, g)
        else:
            assert g["sma10"] == pytest.approx(w["sma10"], rel=REL), (where, g, w)


async def test_kill_9_then_replay_everything_counts_once(aio, pg_url, tmp_path):
    """SIGKILL the engine mid-ingest, start a new one on the same database, re-post every batch:
    ticks_raw holds each tick once and the API's candles (with SMA10) equal an independent reference."""
    rng = random.Random(915)
    symbols = ["K1", "K2", "K3", "K4", "K5", "K6"]
    ticks = make_ticks(rng, symbols, 500, 2.0, "k")  # 500 ticks x 2 s: about 17 minutes per symbol
    batches = [ticks[i:i + 60] for i in range(0, len(ticks), 60)]  # 50 batches
    env = {"DATABASE_URL": pg_url}
    clients = 4
    acked_first: set[int] = set()
    in_flight = 0
    first = {"transport_errors": 0, "in_flight_at_kill": 0, "seen_unacked_commit": False}

    # Phase 1: four clients post. Once 30% of the batches are acknowledged the engine is SIGKILLed at the
    # first moment the database is seen holding ticks whose 202 has not reached the client yet (the
    # nastiest moment for a replay), or at the latest when 70% are acknowledged.
    with server_process(tmp_path, "--no-feeder", env=env) as sp:
        reached = trio.Event()
        killed = trio.Event()

        def acked_ticks() -> int:
            return sum(len(batches[i]) for i in acked_first)

        async def poster(mine: list[int], http: httpx.AsyncClient) -> None:
            nonlocal in_flight
            for i in mine:
                if killed.is_set():
                    return
                in_flight += 1
                try:
                    r = await http.post(sp.base_url + TICKS_PATH, json={"source": "crash", "items": batches[i]},
                                        headers=HEADERS)
                except httpx.TransportError:
                    first["transport_errors"] += 1
                    return  # the server is gone
                finally:
                    in_flight -= 1
                if r.status_code == 202:
                    acked_first.add(i)
                    if len(acked_first) >= len(batches) * 0.3:
                        reached.set()

        async def killer() -> None:
            await reached.wait()
            con = await aio_as_trio(asyncpg.connect)(pg_url, timeout=10)
            try:
                with trio.fail_after(20):
                    while True:
                        stored = await aio_as_trio(con.fetchval)("SELECT count(*) FROM ticks_raw")
                        unacked = stored > acked_ticks()
                        if unacked or len(acked_first) >= len(batches) * 0.7:
                            break
            finally:
                await aio_as_trio(con.close)()
            first["in_flight_at_kill"] = in_flight
            first["seen_unacked_commit"] = unacked
            sp.proc.kill()  # SIGKILL: no drain, no graceful anything
            killed.set()

        order = list(range(len(batches)))
        rng.shuffle(order)
        async with httpx.AsyncClient(timeout=30.0) as http, trio.open_nursery() as n:
            n.start_soon(killer)
            for c in range(clients):
                n.start_soon(poster, order[c::clients], http)
        assert killed.is_set(), "the batches all finished before the kill; make the run longer"
        assert sp.proc.wait(timeout=10) == -9
    [[after_kill]] = await sql(pg_url, "SELECT count(*) FROM ticks_raw")
    acked = acked_ticks()
    assert first["in_flight_at_kill"] >= 1, f"the kill did not land mid-ingest: {first}"
    assert acked <= after_kill < len(ticks), (acked, after_kill)  # acknowledged => durable

    # Phase 2: a new engine on the same database; every batch is re-posted until it gets 202.
    replay = {"accepted": 0, "duplicates": 0, "retries": 0}
    with server_process(tmp_path, "--no-feeder", env=env) as sp2:
        async def reposter(mine: list[int], http: httpx.AsyncClient) -> None:
            for i in mine:
                for attempt in range(50):
                    r = await http.post(sp2.base_url + TICKS_PATH, json={"source": "crash", "items": batches[i]},
                                        headers=HEADERS)
                    if r.status_code == 202:
                        body = r.json()
                        replay["accepted"] += body["accepted"]
                        replay["duplicates"] += body["duplicates"]
                        assert body["skipped"] == 0, body
                        break
                    assert r.status_code == 503, (r.status_code, r.text)
                    replay["retries"] += 1
                    await trio.sleep(min(0.05 * (attempt + 1), 0.5))  # client backoff
                else:
                    pytest.fail(f"batch {i} never got 202 after the restart")

        async with httpx.AsyncClient(timeout=30.0) as http:
            async with trio.open_nursery() as n:
                for c in range(clients):
                    n.start_soon(reposter, list(range(len(batches)))[c::clients], http)

            figures = (f"ticks={len(ticks)} batches={len(batches)} acked-before-kill={len(acked_first)} "
                       f"({acked} ticks) in-flight-at-kill={first['in_flight_at_kill']} "
                       f"stored-at-kill={after_kill} (unacked-commit-seen={first['seen_unacked_commit']}) "
                       f"replay-accepted={replay['accepted']} "
                       f"replay-duplicates={replay['duplicates']} replay-503s={replay['retries']}")
            print("\n[kill -9] " + figures)
            if replay["retries"] == 0:  # each batch answered once: the counts say exactly what was stored
                assert replay["accepted"] == len(ticks) - after_kill, figures
                assert replay["duplicates"] == after_kill, figures

            await assert_raw_is_exactly(pg_url, ticks)
            await assert_aggregates_match_raw(pg_url)
            want = reference_candles(ticks)

            async def candles(sym: str) -> list[dict]:
                r = await http.get(sp2.base_url + f"/api/v1/ticks/{sym}/history",
                                   params={"view": "ohlc1m", "limit": 2000})
                assert r.status_code == 200, r.text
                return r.json()["items"]

            for sym in symbols:
                got = await candles(sym)
                assert len(got) >= 15, f"{sym}: {len(got)} candles; SMA10 needs more minutes"
                assert_candles_equal(sym, got, want[sym])

            # Replay: the same batch ten more times changes nothing and says so.
            batch = batches[7]
            before = {sym: await candles(sym) for sym in symbols}
            for _ in range(10):
                r = await http.post(sp2.base_url + TICKS_PATH, json={"source": "crash", "items": batch},
                                    headers=HEADERS)
                assert r.status_code == 202, r.text
                body = r.json()
                assert (body["accepted"], body["duplicates"]) == (0, len(batch)), body
            [[count]] = await sql(pg_url, "SELECT count(*) FROM ticks_raw")
            [[ohlc_count]] = await sql(pg_url, "SELECT sum(count) FROM ohlc_1m")
            assert count == ohlc_count == len(ticks)
            assert {sym: await candles(sym) for sym in symbols} == before
            await assert_aggregates_match_raw(pg_url)
