"""Engine: the composition root; builds the supervision tree from a Config and runs it to a drained stop.

State it owns: the store, the bus (with Redis), the flusher lanes and the committed-events channel
(all bounded), and the nurseries every task of the tree runs in. Restart policy: none; an exception
that reaches it ends the engine, and the process exits with it. See docs/ARCHITECTURE.md, "The task
tree" (the tree, start and stop).
"""

from __future__ import annotations

import time

import attrs
import structlog
import trio

from candlewick.config import Config
from candlewick.domain import Event, group_by_symbol
from candlewick.errors import BusUnavailable, Overloaded, WrongRole
from candlewick.runtime import (Barrier, Broadcaster, Epochs, Flusher, FlushItem, Listener, Metrics, Publisher, Router,
                                ShardWorker, run_builtin)
from candlewick.schema import Receipt, Tick, TickColumns
from candlewick.storage import MemoryStore, Store

log = structlog.get_logger("candlewick.engine")


class Engine:
    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        if store is None and config.database_url:
            from candlewick.storage.postgres import PostgresStore
            store = PostgresStore(config.database_url, retention_raw=config.pg_retention_raw or None,
                                  retention_1m=config.pg_retention_1m or None, partition_raw=config.pg_partition_raw)
        self.store: Store = store or MemoryStore(max_raw_ticks=config.retention_raw_ticks,
                                                 raw_seconds=config.retention_raw_seconds,
                                                 bar_seconds=config.retention_bar_seconds)
        self.metrics = Metrics()
        # With Redis, a short buffer (the publisher drains it into one message per round trip).
        # Over Postgres, the events of each flush are also in its transaction (the SSE outbox):
        # a process that dies between commit and publish loses none of them.
        out_send, out_receive = trio.open_memory_channel[list[Event]](8 if config.redis_url else 64)
        outbox = bool(config.redis_url) and self.store.durable
        self.epochs = Epochs()
        n_lanes = config.flush_lanes or (2 if self.store.durable else 1)
        self._lanes: list[trio.MemorySendChannel[FlushItem | Barrier]] = []
        self.flushers: list[Flusher] = []
        for _ in range(n_lanes):
            send, receive = trio.open_memory_channel[FlushItem | Barrier](config.flusher_capacity)
            self._lanes.append(send)
            self.flushers.append(Flusher(self.store, receive, out_send.clone(), self.epochs,
                                         max_ticks=config.flush_max_ticks, retry_window=config.ack_deadline,
                                         metrics=self.metrics, write_outbox=outbox))
        out_send.close()
        self.router = Router(config, self.store, self._lanes, self.epochs, metrics=self.metrics)
        self.bus = None
        self.publisher = self.listener = self.shards = None
        if config.redis_url:  # committed events go out over Redis and come back to every process's hub
            from candlewick.bus import RedisBus

            self.bus = RedisBus(config.redis_url, prefix=config.redis_prefix, channel=config.redis_channel,
                                shards=config.shards, idempotency_ttl=config.idempotency_ttl,
                                cluster=config.redis_cluster)
            self.publisher = Publisher(self.bus, out_receive, store=self.store if outbox else None,
                                       grace=config.lease_ttl)
            out_receive = None
        self.hub = Broadcaster(out_receive, replay=config.sse_replay, queue_capacity=config.sse_queue_capacity,
                               metrics=self.metrics)
        if self.bus is not None:
            self.listener = Listener(self.bus, self.hub)
            if config.role == "worker":
                self.shards = ShardWorker(self.bus, self._apply, self.epochs, lease_ttl=config.lease_ttl,
                                          before_takeover=self.publisher.sweep if outbox else None)
        self.metrics.bind(self.router, self.hub, self.flushers)
        self.state = "starting"
        self.started_at = time.time()
        self._stop = trio.Event()
        self._stopped = trio.Event()

    # -- lifecycle --------------------------------------------------------------------------
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await self.store.open()
        try:
            async with trio.open_nursery() as outer:
                if self.bus is not None:
                    await self.bus.open()
                    try:
                        self.hub.last_id = await self.bus.last_id()
                    except BusUnavailable:
                        pass
                    await outer.start(self.hub.run, name="broadcaster")  # fed by the listener until cancelled
                    await outer.start(self.listener.run, name="bus-listener")
                async with trio.open_nursery() as nursery:
                    if self.publisher is not None:
                        nursery.start_soon(self.publisher.run, name="bus-publisher")
                        if self.publisher.store is not None:
                            outer.start_soon(self.publisher.sweep_forever, name="outbox-sweeper")
                    else:
                        await nursery.start(self.hub.run, name="broadcaster")  # ends when the flushers close its inbox
                    for i, flusher in enumerate(self.flushers):
                        nursery.start_soon(flusher.run, name=f"flusher:{i}")
                    try:
                        await self._pipeline(task_status)
                    finally:
                        for lane in self._lanes:  # the flushers drain what is left, then end
                            lane.close()
                outer.cancel_scope.cancel()  # everything is committed and published: stop listening
                self.hub.close_all()
        finally:
            self.state = "stopped"
            with trio.move_on_after(5, shield=True):
                await self.store.close()
                if self.bus is not None:
                    await self.bus.close()
            self._stopped.set()
            log.info("engine_stopped")

    async def _pipeline(self, task_status) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.router.run, name="router")
            async with trio.open_nursery() as aux:
                aux.start_soon(self._prune_forever, name="pruner")
                if self.shards is not None:
                    aux.start_soon(self.shards.run, name="shards")
                if self.config.feeder:
                    aux.start_soon(run_builtin, self.submit, self.config.feeder_symbols, self.config.feeder_rate,
                                   name="feeder")
                self.state = "running"
                task_status.started(self)
                log.info("engine_running", store=self.store.name, feeder=self.config.feeder, role=self.config.role,
                         redis=self.bus is not None)
                await self._stop.wait()
                self.state = "draining"
                aux.cancel_scope.cancel()
            self.router.close()

    def stop(self) -> None:
        """Begin a drained stop; ``run`` returns when everything admitted is committed."""
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _prune_forever(self) -> None:
        while True:
            await trio.sleep(self.config.pg_maintenance_period if self.store.durable else 10)
            await self.store.prune(time.time())

    # -- what the HTTP layer calls ------------------------------------------------------------
    async def submit(self, ticks: list[Tick] | TickColumns) -> Receipt:
        """The HTTP write path. With Redis, keys are claimed there first (one round trip), and
        claims of ticks that end up not applied are released so the client's retry is."""
        role = self.config.role
        if role in ("worker", "gateway"):
            raise WrongRole(f"this process runs role {role} and takes no ticks; post them to an ingest process")
        if self.bus is None:
            return await self._apply(ticks)
        if isinstance(ticks, TickColumns):  # the bus and the shard streams take ticks one by one
            ticks = ticks.to_ticks()
        fresh = await self.bus.claim(ticks)
        new = [t for t, f in zip(ticks, fresh, strict=True) if f]
        dup = len(ticks) - len(new)
        self.metrics.ticks.labels("duplicate").inc(dup)
        if not new:
            return Receipt(0, dup, 0)
        try:
            if role == "ingest":
                await self._append(new)
                self.metrics.ticks.labels("accepted").inc(len(new))
                receipt = Receipt(len(new), 0, 0)
            else:
                receipt = await self._apply(new)
        except BaseException:
            with trio.move_on_after(2, shield=True):
                try:
                    await self.bus.release(new)
                except BusUnavailable as exc:  # the claims lapse with their TTL; the store still dedupes
                    log.error("claims_not_released", ticks=len(new), error=str(exc))
            raise
        return Receipt(receipt.accepted, receipt.duplicates + dup, receipt.skipped)

    async def _append(self, ticks: list[Tick]) -> None:
        """Role ingest: one stream entry per shard; refuse while a shard's backlog is too long."""
        from candlewick.bus import shard_of

        by_shard: dict[int, list[Tick]] = {}
        for symbol, part in group_by_symbol(ticks).items():
            by_shard.setdefault(shard_of(symbol, self.config.shards), []).extend(part)
        shards = list(by_shard)
        backlog = await self.bus.backlog(shards)
        full = [s for s, n in zip(shards, backlog, strict=True) if n >= self.config.stream_max_backlog]
        if full:
            raise Overloaded(f"shard backlog full ({', '.join(map(str, full))}); workers are behind, retry later")
        await self.bus.append(by_shard)

    async def _apply(self, ticks: list[Tick] | TickColumns) -> Receipt:
        """Through this process's actors and flusher; returns once committed."""
        try:
            receipt = await self.router.submit(ticks)
        except BaseException:
            self.metrics.ticks.labels("refused").inc(len(ticks))
            raise
        m = self.metrics.ticks
        m.labels("accepted").inc(receipt.accepted)
        m.labels("duplicate").inc(receipt.duplicates)
        m.labels("skipped").inc(receipt.skipped)
        return receipt

    def flusher_depth(self) -> int:
        return sum(f.statistics().depth for f in self.flushers)

    def tree(self) -> dict:
        """The supervision tree as /ops/health/supervisor shows it, from each part's ``statistics()``."""
        symbols = [{"name": a.name, "state": a.status, "restarts": a.restarts, "lastError": a.last_error,
                    "mailbox": {"depth": a.depth, "peak": a.peak, "capacity": a.capacity}}
                   for a in (actor.statistics() for actor in self.router.slots.values())]
        admission = self.router.admission.statistics()
        return {
            "name": "engine", "state": self.state, "store": self.store.name,
            "uptimeSeconds": round(time.time() - self.started_at, 3),
            "admission": {"inFlightTicks": admission.in_flight_ticks, "peak": admission.peak,
                          "capacity": admission.capacity},
            "children": [
                {"name": "router", "state": self.state, "restartPolicy": {
                    "strategy": "one_for_one", "maxRestarts": self.config.max_restarts,
                    "periodSeconds": self.config.restart_period}, "children": symbols},
                *({"name": f"flusher:{i}", "state": self.state, "flushes": f.flushes,
                   "ticksWritten": f.ticks_written, "lastBatch": f.last_batch, "failures": f.failures,
                   "droppedTicks": f.dropped_ticks, "storeOk": f.store_ok,
                   "mailbox": {"depth": f.depth, "capacity": f.capacity}}
                  for i, f in enumerate(flusher.statistics() for flusher in self.flushers)),
                {"name": "broadcaster", "state": self.state, **attrs.asdict(self.hub.statistics())},
                {"name": "feeder", "state": "running" if self.config.feeder and self.state == "running" else "off"},
                *([self._bus_tree()] if self.bus is not None else []),
            ],
        }

    def _bus_tree(self) -> dict:
        node = {"name": "bus", "role": self.config.role, "state": self.state,
                "subscribed": self.listener.connected, "resubscribes": self.listener.reconnects,
                "published": self.publisher.published, "publishDropped": self.publisher.dropped}
        if self.shards is not None:
            w = self.shards.statistics()
            node["shards"] = {"worker": w.worker, "owned": w.owned, "handingBack": w.handing_back,
                              "entries": w.entries, "ticks": w.ticks, "lag": {str(s): v for s, v in w.lag.items()}}
        return node
