"""The Redis bus against the real Redis server: claims, release, numbered fan-out, leases, streams."""

from __future__ import annotations

import time

import trio

from candlewick.bus import RedisBus, shard_of
from candlewick.schema import Tick
from tests.conftest import REDIS_URL


def ticks(n: int, symbol: str = "BTCUSDT", tag: str = "k") -> list[Tick]:
    return [Tick(f"{tag}{i}", symbol, 100.0 + i, 1_730_425_200.0 + i, 1.0) for i in range(n)]


async def open_bus(prefix: str, **kw) -> RedisBus:
    bus = RedisBus(REDIS_URL, prefix=prefix, channel=f"{prefix}ch", **kw)
    await bus.open()
    return bus


async def test_claims_are_batched_exact_and_released(aio, redis_prefix):
    """A batch's keys are claimed once (repeats inside the batch too), with the TTL; released keys can be claimed again."""
    bus = await open_bus(redis_prefix, idempotency_ttl=1234)
    try:
        batch = ticks(500) + ticks(500, "ETHUSDT") + ticks(10)  # the last 10 repeat keys of the first 10
        fresh = await bus.claim(batch)
        assert fresh[:1000] == [True] * 1000 and fresh[1000:] == [False] * 10
        assert await bus.claim(batch) == [False] * 1010
        ttl = await bus._call(bus._redis.ttl, bus.idem_key("BTCUSDT", "k0"))
        assert 1200 <= ttl <= 1234
        await bus.release(ticks(5))
        assert await bus.claim(ticks(7)) == [True] * 5 + [False] * 2
    finally:
        await bus.close()


async def test_published_batches_carry_the_same_increasing_ids_to_every_subscriber(aio, redis_prefix):
    """Two subscribers see each batch with the same first id, and ids follow publish order."""
    bus = await open_bus(redis_prefix)
    try:
        subs = [await bus.open_subscription() for _ in range(2)]
        firsts = [await bus.publish(n, b'[%d]' % n) for n in (3, 5, 2)]
        assert firsts[1] == firsts[0] + 3 and firsts[2] == firsts[1] + 5
        for ps in subs:
            got = []
            with trio.fail_after(5):
                while len(got) < 3:
                    msg = await bus.next_message(ps, 0.5)
                    if msg is not None:
                        got.append(msg)
            assert got == [(firsts[0], b"[3]"), (firsts[1], b"[5]"), (firsts[2], b"[2]")]
            await bus.close_subscription(ps)
        assert firsts[0] > (time.time_ns() // 1_000) - 60_000_000  # ids continue above wall-clock µs
    finally:
        await bus.close()


async def test_a_lease_has_one_owner_until_it_lapses(aio, redis_prefix):
    """Only one worker holds a shard; its renewal works, another's take fails until the lease lapses or is given up."""
    bus = await open_bus(redis_prefix)
    try:
        assert await bus.lease(3, "a", 0.3)
        assert await bus.lease(3, "a", 0.3)  # renew
        assert not await bus.lease(3, "b", 0.3)
        await bus.unlease(3, "b")  # not b's to give up
        assert not await bus.lease(3, "b", 0.3)
        await bus.unlease(3, "a")
        assert await bus.lease(3, "b", 5)
    finally:
        await bus.close()


async def test_stream_entries_are_taken_over_from_a_dead_consumer(aio, redis_prefix):
    """Entries read but never acknowledged by one consumer are claimed by another after the idle time, in order."""
    bus = await open_bus(redis_prefix, shards=2)
    try:
        await bus.ensure_groups()
        shard = shard_of("BTCUSDT", 2)
        for i in range(3):
            await bus.append({shard: ticks(2, tag=f"e{i}-")})
        assert await bus.backlog([shard]) == [3]
        got = await bus.read(shard, "dead", ">", 10, 0.1)
        assert len(got) == 3
        assert await bus.pending_others(shard, "alive") == 3
        assert await bus.autoclaim(shard, "alive", 60, 10) == []  # not idle long enough
        claimed = await bus.autoclaim(shard, "alive", 0, 10)
        assert [e[0] for e in claimed] == [e[0] for e in got]
        await bus.ack(shard, [e[0] for e in claimed])
        assert await bus.pending_others(shard, "alive") == 0
        assert await bus.backlog([shard]) == [0]
        lag = await bus.lag()
        assert lag[shard]["pending"] == 0
    finally:
        await bus.close()


async def test_cluster_mode_and_keys_with_newlines_claim_the_same_way(aio, redis_prefix):
    """Per-symbol calls (Redis Cluster) and keys holding newlines or tabs give the same answers, in request order."""
    odd = [Tick("a\nb", "X", 1.0, 1.0, 0.0), Tick("tab\tkey", "Y", 1.0, 1.0, 0.0), Tick("a\nb", "X", 1.0, 1.0, 0.0)]
    for cluster in (False, True):
        bus = await open_bus(f"{redis_prefix}{int(cluster)}:", cluster=cluster)
        try:
            batch = ticks(3, "A") + odd + ticks(3, "B") + ticks(2, "A")
            assert await bus.claim(batch) == [True] * 3 + [True, True, False] + [True] * 3 + [False] * 2
            assert await bus.claim(batch) == [False] * len(batch)
            await bus.release(odd)
            assert await bus.claim(odd) == [True, True, False]
        finally:
            await bus.close()
