"""The SSE outbox over the real Postgres and Redis: events committed by a process that died before
publishing them go out once, from another process's sweep, and never twice."""

from __future__ import annotations

import time

import orjson
import trio

from candlewick.bus import RedisBus
from candlewick.runtime._relay import Publisher
from candlewick.schema import Tick
from candlewick.storage.postgres import PostgresStore
from tests.conftest import REDIS_URL, wait_until
from tests.integration.test_postgres import sql

T0 = float((int(time.time()) // 3600 - 3) * 3600)  # recent: within the Postgres raw retention


def flush(tag: str, n: int) -> tuple[dict[str, list[Tick]], list[list]]:
    """A flush's writes and its events as bus rows (symbol, price, ts, volume, sma10, bucket, o, h, l, c, v, at)."""
    ticks = [Tick(f"{tag}{i}", "S", 100.0 + i, T0 + i, 1.0) for i in range(n)]
    rows = [[t.symbol, t.price, t.ts, t.volume, None, T0, 100.0, t.price, 100.0, t.price, i + 1.0, None]
            for i, t in enumerate(ticks)]
    return {"S": ticks}, rows


async def received(bus: RedisBus, ps, wait: float = 0.3) -> list[tuple[int, list]]:
    """Every message on the channel until none comes for ``wait`` seconds: (first id, rows)."""
    out = []
    while (msg := await bus.next_message(ps, wait)) is not None:
        out.append((msg[0], orjson.loads(msg[1])))
    return out


async def test_orphaned_outbox_rows_are_published_once_in_order(aio, pg_url, redis_prefix):
    store = PostgresStore(pg_url)
    bus = RedisBus(REDIS_URL, prefix=redis_prefix, channel=f"{redis_prefix}ch")
    await store.open()
    await bus.open()
    ps = await bus.open_subscription()
    try:
        # process A commits two flushes with their events, then dies before publishing either
        (w1, rows1), (w2, rows2), (w3, rows3) = flush("a", 3), flush("b", 2), flush("c", 4)
        r1 = await store.write(w1, outbox=orjson.dumps(rows1))
        r2 = await store.write(w2, outbox=orjson.dumps(rows2))
        assert r1 is not None and r2 is not None and r2 > r1
        assert (await sql(pg_url, "SELECT count(*) FROM ticks_raw"))[0][0] == 5

        # process B's periodic sweep leaves young rows alone (their own process is publishing them)
        b = Publisher(bus, None, store=store, grace=60.0)
        assert await b.sweep() == 0
        assert await received(bus, ps) == []
        assert (await sql(pg_url, "SELECT count(*) FROM sse_outbox"))[0][0] == 2

        # a takeover sweeps every age: both flushes, in commit order, in one message, then deleted
        assert await b.sweep(0.0) == 5
        got = await received(bus, ps)
        assert [rows for _, rows in got] == [rows1 + rows2]
        first = got[0][0]
        assert (await sql(pg_url, "SELECT count(*) FROM sse_outbox"))[0][0] == 0

        # A was only slow, not dead: its late publish of flush 1 with a newer flush 3 sends flush 3 alone
        r3 = await store.write(w3, outbox=orjson.dumps(rows3))
        a = Publisher(bus, None, store=store)
        sent = await a._publish([(r1, rows1), (r3, rows3)], give_up=1.0)
        assert sent == 4
        assert await received(bus, ps) == [(first + 5, rows3)]  # ids continue with no gap
        assert (await sql(pg_url, "SELECT count(*) FROM sse_outbox"))[0][0] == 0
        # and a sweep racing that publish finds nothing left to send
        assert await b.sweep(0.0) == 0
        assert await received(bus, ps) == []
    finally:
        await bus.close_subscription(ps)
        await bus.close()
        await store.close()


async def test_a_flush_commits_its_events_to_the_outbox_in_its_transaction(aio, pg_url, redis_prefix):
    """A flush that rolls back (a key already stored, fast path) leaves no outbox row; the exact
    path that then commits it writes exactly one."""
    store = PostgresStore(pg_url)
    await store.open()
    try:
        (w1, rows1), (w2, rows2) = flush("d", 3), flush("d", 5)  # w2 repeats w1's three keys
        await store.write(w1, outbox=orjson.dumps(rows1))
        r2 = await store.write(w2, outbox=orjson.dumps(rows2))
        stored = await sql(pg_url, "SELECT id, rows FROM sse_outbox ORDER BY id")
        assert [r["id"] for r in stored][-1] == r2 and len(stored) == 2
        assert orjson.loads(bytes(stored[-1]["rows"])) == rows2
        assert (await sql(pg_url, "SELECT count(*) FROM ticks_raw"))[0][0] == 5
        assert store.exact_writes == 1
        with trio.fail_after(5):
            assert await store.write({"S": []}, outbox=b"[]") is None  # nothing to commit: no row
    finally:
        await store.close()


async def test_events_of_a_process_that_died_between_commit_and_publish_reach_subscribers(nursery, aio, pg_url,
                                                                                        redis_prefix):
    """Process A acknowledges ticks (committed) but dies before publishing their events (its Redis
    publish never returns: the window a kill -9 can hit). A subscriber on a gateway receives every
    one of them, once, from process B's outbox sweep; the outbox is empty afterwards."""
    from candlewick.engine import Engine
    from tests.conftest import make_config, start_live_server
    from tests.e2e.test_sse import open_stream

    shared = {"database_url": pg_url, "redis_url": REDIS_URL, "redis_prefix": redis_prefix,
              "redis_channel": f"{redis_prefix}ch", "lease_ttl": 0.5}
    gateway = await start_live_server(nursery, role="gateway", **shared)
    response, reader = await open_stream(gateway)
    assert orjson.loads((await reader.next_event())["data"])["ok"] is True  # the hello

    ticks = [Tick(f"died-{i}", f"S{i % 3}", 100.0 + i, T0 + i, 1.0) for i in range(30)]
    a = Engine(make_config(**shared))

    async def never(*args, **kwargs):
        await trio.sleep_forever()
    a.bus.publish = never  # the commit happens; the publish never does
    async with trio.open_nursery() as a_scope:
        await a_scope.start(a.run)
        receipt = await a.submit(ticks)
        assert receipt.accepted == 30
        assert (await sql(pg_url, "SELECT count(*) FROM ticks_raw"))[0][0] == 30
        assert (await sql(pg_url, "SELECT count(*) FROM sse_outbox"))[0][0] >= 1
        a_scope.cancel_scope.cancel()  # A is gone; nothing of it publishes any more

    b = Engine(make_config(**shared))
    await nursery.start(b.run)
    seen = []
    with trio.fail_after(10):
        while len(seen) < 30:
            ev = await reader.next_event()
            if "data" in ev and orjson.loads(ev["data"]).get("kind") == "tick":
                seen.append(orjson.loads(ev["data"]))
    assert sorted((e["symbol"], e["ts"]) for e in seen) == sorted((t.symbol, t.ts) for t in ticks)
    assert all("committedAt" not in e for e in seen)  # a sweep does not invent a commit time
    async def outbox_empty() -> bool:  # deleted just after the publish returns
        return (await sql(pg_url, "SELECT count(*) FROM sse_outbox"))[0][0] == 0
    await wait_until(outbox_empty)

    def swept() -> int:  # B's sweeper, and the gateway's if it has one: whichever came first
        return b.publisher.swept + getattr(gateway.engine.publisher, "swept", 0)

    async def counted() -> bool:  # a sweep counts its events once its publish call has returned
        return swept() >= 30
    await wait_until(counted)
    assert swept() == 30
    with trio.move_on_after(1.5):  # three more sweep rounds: nothing goes out twice
        ev = await reader.next_event()
        while "data" not in ev or orjson.loads(ev["data"]).get("kind") != "tick":
            ev = await reader.next_event()
        raise AssertionError(f"an event went out again: {ev}")
    await response.aclose()
    b.stop()
    await b.wait_stopped()
    await gateway.client.aclose()
    gateway.running.stop()
