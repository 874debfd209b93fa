"""The Redis bus: every Redis operation Candlewick makes, at one trio-asyncio boundary.

Each method is one complete asyncio coroutine run with ``aio_as_trio``; connection problems raise
``BusUnavailable``. The scripts and the stream entry format are in ``_scripts``. What lives in
Redis (keys, channel, row format) and why: docs/ARCHITECTURE.md, "Scale-out over Redis".
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence

import structlog
import trio

from candlewick.bus._scripts import CLAIM, CLAIM_KEYS, LEASE, PUBLISH, UNLEASE, encode_entry
from candlewick.errors import BusUnavailable
from candlewick.schema import Tick

log = structlog.get_logger("candlewick.bus")

GROUP = "workers"


def shard_of(symbol: str, shards: int) -> int:
    """Stable across processes and machines (Python's str hash is salted per process)."""
    return zlib.crc32(symbol.encode()) % shards


class RedisBus:
    def __init__(self, url: str, *, prefix: str = "cw:", channel: str = "ch:ticks", shards: int = 8,
                 idempotency_ttl: int = 3 * 86_400, timeout: float = 5.0, cluster: bool = False,
                 outbox_keep: float = 3_600.0) -> None:
        self.url = url
        self.cluster = cluster
        self.prefix = prefix
        self.channel = channel
        self.shards = shards
        self.ttl = idempotency_ttl
        self.timeout = timeout
        self.id_key = f"{prefix}{{sse}}:id"  # one hash tag: the publish script's keys share a slot
        self.published_key = f"{prefix}{{sse}}:outbox"
        self.outbox_keep = outbox_keep
        self.workers_key = f"{prefix}workers"
        self._redis = None
        self._scripts: dict[str, str] = {}

    # -- keys -------------------------------------------------------------------------------
    def idem_key(self, symbol: str, key: str) -> str:
        return f"{self.prefix}idem:{{{symbol}}}:{key}"

    def stream(self, shard: int) -> str:
        return f"{self.prefix}{{s{shard}}}:ticks"

    def lease_key(self, shard: int) -> str:
        return f"{self.prefix}{{s{shard}}}:owner"

    # -- plumbing ---------------------------------------------------------------------------
    async def _call(self, fn, *args):
        """Run one asyncio coroutine function under a deadline; map failures to BusUnavailable."""
        from redis.exceptions import RedisError
        from trio_asyncio import aio_as_trio

        try:
            with trio.fail_after(self.timeout):
                return await aio_as_trio(fn)(*args)
        except (RedisError, OSError, trio.TooSlowError) as exc:
            raise BusUnavailable(f"redis is unreachable ({type(exc).__name__}: {exc}); retry later") from exc

    async def open(self) -> None:
        import redis.asyncio as aredis

        async def connect():
            client = aredis.Redis.from_url(self.url, socket_timeout=self.timeout,
                                           socket_connect_timeout=self.timeout, health_check_interval=10)
            return client
        self._redis = await self._call(connect)
        try:
            await self._load()
        except BusUnavailable as exc:  # the engine still starts; readiness says redis: fail
            log.warning("redis_unavailable_at_start", error=str(exc))

    async def _load(self) -> None:
        r = self._redis

        async def load():
            # ids continue above any a single process issued before (those start at wall-clock µs)
            await r.set(self.id_key, time.time_ns() // 1_000, nx=True)
        await self._call(load)
        # Script objects run EVALSHA and load the script again if Redis lost it (a restart)
        self._scripts = {name: r.register_script(src) for name, src in
                         (("claim", CLAIM), ("claim_keys", CLAIM_KEYS), ("publish", PUBLISH), ("lease", LEASE),
                          ("unlease", UNLEASE))}

    async def _ensure(self) -> None:
        if not self._scripts:
            await self._load()

    async def close(self) -> None:
        if self._redis is not None:
            r, self._redis = self._redis, None
            try:
                await self._call(r.aclose)
            except BusUnavailable:
                pass

    async def check(self) -> bool:
        try:
            await self._call(self._redis.ping)
            await self._ensure()
            return True
        except BusUnavailable:
            return False

    # -- idempotency --------------------------------------------------------------------------
    async def claim(self, ticks: Sequence[Tick]) -> list[bool]:
        """Claim every tick's key; True where it was new (now claimed by this request)."""
        await self._ensure()
        groups: dict[str, list[Tick]] = {}
        if self.cluster:  # a script's keys must share a slot: one call per symbol (its hash tag)
            for t in ticks:
                groups.setdefault(t.symbol, []).append(t)
        else:  # one call for the whole request
            groups[ticks[0].symbol if ticks else ""] = list(ticks)
        claim, claim_keys = self._scripts["claim"], self._scripts["claim_keys"]
        ttl, root, key = self.ttl, f"{self.prefix}idem:", self.idem_key

        def call(symbol: str, part: list[Tick], client):
            lines = "\n".join([f"{t.symbol}\t{_text(t.key)}" for t in part])
            if lines.count("\n") != len(part) - 1:  # a key holds a newline: spell every key out
                return claim_keys(keys=[key(t.symbol, _text(t.key)) for t in part], args=[ttl], client=client)
            return claim(keys=[key(symbol, "")], args=[ttl, root, lines], client=client)

        r = self._redis

        async def run():
            if len(groups) == 1:
                (symbol, part), = groups.items()
                return [await call(symbol, part, r)]
            pipe = r.pipeline(transaction=False)
            for symbol, part in groups.items():
                await call(symbol, part, pipe)
            return await pipe.execute()
        replies = await self._call(run)
        fresh: list[bool] = []
        for part, reply in zip(groups.values(), replies, strict=True):
            if len(reply) != len(part):
                raise BusUnavailable(f"redis answered {len(reply)} claims for {len(part)} keys")
            fresh.extend(bit == 49 for bit in reply)  # b"1"
        if self.cluster:  # back to the request's order
            where = {id(t): i for i, t in enumerate(ticks)}
            out = [False] * len(ticks)
            for t, f in zip((t for part in groups.values() for t in part), fresh, strict=True):
                out[where[id(t)]] = f
            return out
        return fresh

    async def release(self, ticks: Sequence[Tick]) -> None:
        """Give back claims of ticks that were not applied, so the client's retry is."""
        if not ticks:
            return
        r = self._redis

        async def run():
            pipe = r.pipeline(transaction=False)
            groups: dict[str, list[str]] = {}
            for t in ticks:
                groups.setdefault(t.symbol, []).append(self.idem_key(t.symbol, _text(t.key)))
            for keys in groups.values():
                pipe.delete(*keys)
            await pipe.execute()
        await self._call(run)

    # -- fan-out ----------------------------------------------------------------------------
    async def publish(self, n: int, payload: bytes, outbox: Sequence[int] = ()) -> int | list[int]:
        """Number ``n`` events and publish them as one message; returns the first id.

        ``outbox``: the ids of the store's outbox rows the payload holds. If any of them was
        published before, nothing is: the reply is then the list of their positions in
        ``outbox`` (0-based), for the caller to publish the rest without them."""
        await self._ensure()
        script = self._scripts["publish"]
        args = [n, self.channel, payload, f"{time.time():.3f}", self.outbox_keep, *outbox]
        reply = await self._call(lambda: script(keys=[self.id_key, self.published_key], args=args))
        if isinstance(reply, bytes):
            return [int(i) - 1 for i in reply.split(b",")]
        return int(reply)

    async def last_id(self) -> int:
        raw = await self._call(self._redis.get, self.id_key)
        return int(raw) if raw is not None else time.time_ns() // 1_000

    async def open_subscription(self):
        ps = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._call(ps.subscribe, self.channel)
        return ps

    async def next_message(self, ps, wait: float) -> tuple[int, bytes] | None:
        """The next published batch as ``(first id, json array)``, or None after ``wait`` s."""
        from redis.exceptions import RedisError
        from trio_asyncio import aio_as_trio

        try:
            with trio.fail_after(wait + self.timeout):
                msg = await aio_as_trio(ps.get_message)(timeout=wait)
        except (RedisError, OSError, trio.TooSlowError) as exc:
            raise BusUnavailable(f"redis subscription lost ({type(exc).__name__}: {exc})") from exc
        if msg is None or msg.get("type") != "message":
            return None
        head, _, body = msg["data"].partition(b" ")
        return int(head), body

    async def close_subscription(self, ps) -> None:
        try:
            await self._call(ps.aclose)
        except BusUnavailable:
            pass

    # -- streams (role ingest -> role worker) -------------------------------------------------
    async def backlog(self, shards: Sequence[int]) -> list[int]:
        r = self._redis

        async def run():
            pipe = r.pipeline(transaction=False)
            for s in shards:
                pipe.xlen(self.stream(s))
            return await pipe.execute()
        return await self._call(run)

    async def append(self, by_shard: dict[int, list[Tick]]) -> None:
        """One stream entry per shard holding that shard's ticks of the request."""
        r = self._redis

        async def run():
            pipe = r.pipeline(transaction=False)
            for shard, ticks in by_shard.items():
                pipe.xadd(self.stream(shard), encode_entry(ticks))
            await pipe.execute()
        await self._call(run)

    async def ensure_groups(self) -> None:
        from redis.exceptions import ResponseError

        r = self._redis

        async def run():
            for s in range(self.shards):
                try:
                    await r.xgroup_create(self.stream(s), GROUP, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
        await self._call(run)

    async def heartbeat(self, worker: str, ttl: float) -> int:
        """Record this worker alive; returns how many workers are alive."""
        r, key = self._redis, self.workers_key

        async def run():
            now = time.time()
            pipe = r.pipeline(transaction=False)
            pipe.zadd(key, {worker: now})
            pipe.zremrangebyscore(key, "-inf", now - ttl)
            pipe.zcard(key)
            return (await pipe.execute())[2]
        return int(await self._call(run))

    async def leave(self, worker: str) -> None:
        await self._call(self._redis.zrem, self.workers_key, worker)

    async def lease(self, shard: int, owner: str, ttl: float) -> bool:
        await self._ensure()
        script = self._scripts["lease"]
        return bool(await self._call(lambda: script(keys=[self.lease_key(shard)], args=[owner, int(ttl * 1000)])))

    async def unlease(self, shard: int, owner: str) -> None:
        await self._ensure()
        script = self._scripts["unlease"]
        await self._call(lambda: script(keys=[self.lease_key(shard)], args=[owner]))

    async def pending_others(self, shard: int, consumer: str) -> int:
        """Entries of this shard delivered to some other consumer and never acknowledged."""
        info = await self._call(self._redis.xpending, self.stream(shard), GROUP)
        return sum(int(c["pending"]) for c in info.get("consumers") or () if _s(c["name"]) != consumer)

    async def autoclaim(self, shard: int, consumer: str, min_idle: float, count: int) -> list:
        """XAUTOCLAIM the oldest idle pending entries of the shard for ``consumer``."""
        reply = await self._call(self._redis.xautoclaim, self.stream(shard), GROUP, consumer,
                                 int(min_idle * 1000), "0-0", count)
        return reply[1]

    async def read(self, shard: int, consumer: str, start: str, count: int, block: float) -> list:
        """XREADGROUP from ``start`` (``0``: our own pending; ``>``: new entries)."""
        r = self._redis

        async def run():
            reply = await r.xreadgroup(GROUP, consumer, {self.stream(shard): start}, count=count,
                                       block=int(block * 1000) if start == ">" else None)
            return reply[0][1] if reply else []
        return await self._call(run)  # block stays well under the call deadline

    async def ack(self, shard: int, ids: Sequence[bytes]) -> None:
        r, stream = self._redis, self.stream(shard)

        async def run():
            pipe = r.pipeline(transaction=False)
            pipe.xack(stream, GROUP, *ids)
            pipe.xdel(stream, *ids)  # acknowledged entries are in Postgres: free their memory
            await pipe.execute()
        await self._call(run)

    async def lag(self) -> dict[int, dict[str, int]]:
        r = self._redis

        async def run():
            pipe = r.pipeline(transaction=False)
            for s in range(self.shards):
                pipe.xinfo_groups(self.stream(s))
            return await pipe.execute(raise_on_error=False)
        out: dict[int, dict[str, int]] = {}
        for s, groups in enumerate(await self._call(run)):
            if isinstance(groups, Exception):
                continue
            for g in groups:
                if _s(g["name"]) == GROUP:
                    out[s] = {"lag": int(g.get("lag") or 0), "pending": int(g.get("pending") or 0)}
        return out


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)




def _text(key: bytes | str) -> str:
    """A tick's key as Redis holds it: a digest (16 bytes) as its 32 hex digits."""
    return key.hex() if type(key) is bytes else key
