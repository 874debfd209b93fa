"""Prometheus metrics of one engine, in its own registry (tests run several engines)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:  # the parts the gauges read; they import nothing of this module
    from candlewick.runtime._broadcaster import Broadcaster
    from candlewick.runtime._flusher import Flusher
    from candlewick.runtime._router import Router


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ticks = Counter("candlewick_ticks", "Ticks by outcome", ["outcome"], registry=r)
        self.rejected = Counter("candlewick_rejected_requests", "Write requests refused before ingest, by error code",
                                ["code"], registry=r)
        self.flush_size = Histogram("candlewick_flush_batch_ticks", "Ticks per flush", registry=r,
                                    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000))
        self.flush_latency = Histogram("candlewick_flush_seconds", "Store write time per flush", registry=r,
                                       buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
        self.actor_restarts = Counter("candlewick_actor_restarts", "Symbol actor restarts", registry=r)
        self.actor_failures = Counter("candlewick_actor_failures", "Symbol actors past their restart limit",
                                      registry=r)
        self.http = Histogram("candlewick_http_request_seconds", "HTTP request durations",
                              ["method", "route", "status"], registry=r,
                              buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10))

    def flush(self, n: int, seconds: float) -> None:
        self.flush_size.observe(n)
        self.flush_latency.observe(seconds)

    def actor_failed(self, symbol: str) -> None:
        self.actor_failures.inc()

    def bind(self, router: Router, hub: Broadcaster, flushers: Sequence[Flusher]) -> None:
        """Read these parts' ``statistics()`` at each scrape."""
        self.registry.register(_Gauges(router, hub, flushers))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Gauges:
    """Gauges (and the SSE event counter) read at scrape time from the live parts."""

    def __init__(self, router: Router, hub: Broadcaster, flushers: Sequence[Flusher]) -> None:
        self.router = router
        self.hub = hub
        self.flushers = flushers

    def describe(self):
        return []

    def collect(self):
        router = self.router
        depth = GaugeMetricFamily("candlewick_mailbox_depth", "Messages waiting per actor mailbox",
                                  labels=["actor"])
        total = 0
        for symbol, actor in router.slots.items():
            d = actor.depth()
            total += d
            if d:
                depth.add_metric([f"symbol:{symbol}"], d)
        depth.add_metric(["flusher"], sum(f.statistics().depth for f in self.flushers))
        yield depth
        # a gauge: no _total suffix, which Prometheus keeps for counters
        yield GaugeMetricFamily("candlewick_symbol_mailboxes_depth", "Messages waiting in all symbol mailboxes together",
                                value=total)
        yield GaugeMetricFamily("candlewick_in_flight_ticks", "Ticks admitted and not yet committed",
                                value=router.admission.statistics().in_flight_ticks)
        yield GaugeMetricFamily("candlewick_symbol_actors", "Symbol actors", value=len(router.slots))
        stats = self.hub.statistics()
        yield GaugeMetricFamily("candlewick_sse_subscribers", "Connected SSE subscribers", value=stats.subscribers)
        # cumulative since start: a counter, exposed as candlewick_sse_events_total
        sent = CounterMetricFamily("candlewick_sse_events", "SSE events queued to subscribers / dropped by resync",
                                   labels=["outcome"])
        sent.add_metric(["sent"], stats.events_sent)
        sent.add_metric(["dropped"], stats.events_dropped)
        yield sent
