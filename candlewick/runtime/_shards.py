"""ShardWorker (role ``worker``): owns a fair share of the stream shards and feeds the engine.

State it owns: its leases (a cancel scope per owned shard, one ``shard:<n>`` task each), the symbols
seen per shard, its counters and the last lag read (``statistics()``). Reads the shard streams
through the consumer group and submits each batch to the engine, acknowledging the entries only
after the commit. Restart policy: a shard task that loses its lease is cancelled; Redis faults make
the worker drop all shards (others may take them) and retry; anything else escalates to the engine.
See docs/ARCHITECTURE.md, "Scale-out over Redis" (shard workers).
"""

from __future__ import annotations

import math
import uuid

import attrs
import structlog
import trio

from candlewick.bus import RedisBus, decode_entry
from candlewick.errors import BusUnavailable, Unavailable

log = structlog.get_logger("candlewick.shards")


@attrs.frozen
class ShardWorkerStatistics:
    """A worker's shards as the supervision tree shows them."""

    worker: str
    """This worker's consumer name."""
    owned: list[int]
    """Shards it holds the lease of."""
    handing_back: list[int]
    """Shards it is letting go of (finishing what it read first)."""
    entries: int
    """Stream entries processed, all told."""
    ticks: int
    """Ticks in those entries."""
    lag: dict[int, dict[str, int]]
    """Per shard: the consumer group's lag and pending entries, as last read."""


class ShardWorker:
    def __init__(self, bus: RedisBus, submit, epochs, *, name: str | None = None, lease_ttl: float = 5.0,
                 claim_idle: float | None = None, batch_entries: int = 64, block: float = 1.0,
                 max_submit: int = 10_000, before_takeover=None) -> None:
        self.bus = bus
        self.submit = submit
        self.epochs = epochs
        self.name = name or f"worker-{uuid.uuid4().hex[:8]}"
        self.lease_ttl = lease_ttl
        self.claim_idle = lease_ttl if claim_idle is None else claim_idle
        self.batch_entries = batch_entries
        self.block = block
        self.max_submit = max_submit
        self.before_takeover = before_takeover
        """Awaited (with 0: every age) before a shard is consumed: the publisher's outbox sweep,
        so what a dead owner committed but did not publish goes out before anything newer."""
        self.owned: dict[int, trio.CancelScope] = {}
        self.stopping: set[int] = set()
        self.symbols: dict[int, set[str]] = {}
        self.entries_done = 0
        self.ticks_done = 0
        self.lag: dict[int, dict[str, int]] = {}

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            try:
                while True:
                    try:
                        await self._balance(nursery)
                        self.lag = await self.bus.lag()
                    except BusUnavailable as exc:
                        log.warning("shards_redis_unavailable", error=str(exc))
                        for shard in list(self.owned):
                            self._lose(shard)
                    await trio.sleep(self.lease_ttl / 3)
            finally:
                for shard in list(self.owned):
                    self._lose(shard)
                with trio.move_on_after(2, shield=True):
                    for shard in range(self.bus.shards):
                        try:
                            await self.bus.unlease(shard, self.name)
                        except BusUnavailable:
                            break
                    try:
                        await self.bus.leave(self.name)
                    except BusUnavailable:
                        pass

    async def _balance(self, nursery: trio.Nursery) -> None:
        bus = self.bus
        if not self.owned and not getattr(self, "_groups_ok", False):
            await bus.ensure_groups()
            self._groups_ok = True
        alive = await bus.heartbeat(self.name, self.lease_ttl * 2)
        target = math.ceil(bus.shards / max(1, alive))
        for shard in list(self.owned):
            if shard not in self.stopping and not await bus.lease(shard, self.name, self.lease_ttl):
                log.warning("shard_lease_lost", shard=shard)
                self._lose(shard)
        active = [s for s in self.owned if s not in self.stopping]
        for shard in sorted(active, reverse=True)[:max(0, len(active) - target)]:
            self.stopping.add(shard)  # finishes its current batch, then hands the shard back
            log.info("shard_handing_back", shard=shard, target=target, alive=alive)
        for shard in range(bus.shards):
            if len(self.owned) >= target:
                break
            if shard not in self.owned and await bus.lease(shard, self.name, self.lease_ttl):
                scope = trio.CancelScope()
                self.owned[shard] = scope
                nursery.start_soon(self._own, shard, scope, name=f"shard:{shard}")
                log.info("shard_acquired", shard=shard, worker=self.name)

    def _lose(self, shard: int) -> None:
        scope = self.owned.pop(shard, None)
        self.stopping.discard(shard)
        if scope is not None:
            scope.cancel()
        for symbol in self.symbols.pop(shard, ()):  # another worker may apply ticks meanwhile
            self.epochs.bump(symbol)

    async def _own(self, shard: int, scope: trio.CancelScope) -> None:
        with scope:
            try:
                await self._consume(shard)
            except BusUnavailable as exc:
                log.warning("shard_redis_unavailable", shard=shard, error=str(exc))
            finally:
                if self.owned.get(shard) is scope:
                    self._lose(shard)
                    with trio.move_on_after(1, shield=True):
                        try:
                            await self.bus.unlease(shard, self.name)
                        except BusUnavailable:
                            pass

    async def _consume(self, shard: int) -> None:
        bus = self.bus
        if self.before_takeover is not None:
            while True:
                try:
                    await self.before_takeover(0.0)
                    break
                except Unavailable as exc:  # Redis or the store: nothing is consumed before it
                    log.warning("shard_takeover_sweep_retry", shard=shard, error=str(exc))
                    await trio.sleep(0.25)
        # 1. what a previous owner left unacknowledged, oldest first, before anything newer
        while await bus.pending_others(shard, self.name):
            entries = await bus.autoclaim(shard, self.name, self.claim_idle, self.batch_entries)
            if entries:
                await self._process(shard, entries)
            else:
                await trio.sleep(min(0.25, self.claim_idle / 4))  # not idle long enough yet
        # 2. our own unacknowledged entries (a lease we held before), then new ones
        start = "0"
        while shard not in self.stopping:
            entries = await bus.read(shard, self.name, start, self.batch_entries, self.block)
            if start == "0" and not entries:
                start = ">"
                continue
            if entries:
                await self._process(shard, entries)

    async def _process(self, shard: int, entries: list) -> None:
        ids, ticks = [], []
        for entry_id, fields in entries:
            ids.append(entry_id)
            if not fields:
                continue
            try:
                ticks.extend(decode_entry(fields))
            except (ValueError, TypeError) as exc:  # not ours: acknowledge it so it cannot block the shard
                log.error("stream_entry_unreadable", shard=shard, entry=entry_id, error=str(exc))
        known = self.symbols.setdefault(shard, set())
        for t in ticks:
            known.add(t.symbol)
        for i in range(0, len(ticks), self.max_submit):  # in order; each part well inside admission
            part = ticks[i:i + self.max_submit]
            delay = 0.05
            while True:
                try:
                    await self.submit(part)
                    break
                except Unavailable as exc:
                    log.warning("shard_submit_retry", shard=shard, error=str(exc), retry_in=delay)
                    await trio.sleep(delay)
                    delay = min(delay * 2, 2.0)
        await bus_retry(lambda: self.bus.ack(shard, ids))
        self.entries_done += len(ids)
        self.ticks_done += len(ticks)

    def statistics(self) -> ShardWorkerStatistics:
        return ShardWorkerStatistics(self.name, sorted(self.owned), sorted(self.stopping), self.entries_done,
                                     self.ticks_done, {s: dict(v) for s, v in sorted(self.lag.items())})


async def bus_retry(op, attempts: int = 20) -> None:
    delay = 0.05
    for i in range(attempts):
        try:
            await op()
            return
        except BusUnavailable:
            if i == attempts - 1:
                raise
            await trio.sleep(delay)
            delay = min(delay * 2, 1.0)
