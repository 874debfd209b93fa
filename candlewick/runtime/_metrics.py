"""Prometheus metrics of one engine, in its own registry (tests run several engines)."""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily


class Engine(Protocol):
    """What the scrape-time gauges read: the engine that ``bind`` was given."""

    router: Any
    hub: Any

    def flusher_depth(self) -> int: ...


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

    def bind(self, engine: Engine) -> None:
        self.registry.register(_EngineGauges(engine))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _EngineGauges:
    """Gauges read at scrape time from the live engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self):
        return []

    def collect(self):
        e = self.engine
        depth = GaugeMetricFamily("candlewick_mailbox_depth", "Messages waiting per actor mailbox",
                                  labels=["actor"])
        total = 0
        for symbol, slot in e.router.slots.items():
            d = slot.depth()
            total += d
            if d:
                depth.add_metric([f"symbol:{symbol}"], d)
        depth.add_metric(["flusher"], e.flusher_depth())
        yield depth
        yield GaugeMetricFamily("candlewick_mailbox_depth_total", "Messages waiting in all symbol mailboxes",
                                value=total)
        yield GaugeMetricFamily("candlewick_in_flight_ticks", "Ticks admitted and not yet committed",
                                value=e.router.admission.in_use)
        yield GaugeMetricFamily("candlewick_symbol_actors", "Symbol actors", value=len(e.router.slots))
        stats = e.hub.statistics()
        yield GaugeMetricFamily("candlewick_sse_subscribers", "Connected SSE subscribers", value=stats["subscribers"])
        sent = GaugeMetricFamily("candlewick_sse_events", "SSE events queued to subscribers / dropped by resync",
                                 labels=["outcome"])
        sent.add_metric(["sent"], stats["events_sent"])
        sent.add_metric(["dropped"], stats["events_dropped"])
        yield sent
