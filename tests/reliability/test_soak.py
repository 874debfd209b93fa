"""Item 9: soak. ``candlewick run`` on Postgres under steady load, SSE fan-out and killed connections.

One server process (DATABASE_URL = a fresh database). SSE subscribers (one symbol each) connect
and read the stream throughout. First the test measures the maximum acknowledged rate with them
reading (closed loop: 4 clients posting 1,000-tick batches back to back); then it posts open-loop
at half of it for the soak duration while the database connections of the server are killed with
``pg_terminate_backend`` at jittered intervals. Every 503 is retried until 202.

Figures and checks:

- 0 lost: every acknowledged tick is in ``ticks_raw``; 0 doubled: ``ticks_raw`` holds exactly the
  acknowledged keys, no receipt counted a tick ``accepted`` twice (sum of accepted <= rows), and
  ``ohlc_1m``/``metrics_1m`` equal a recomputation from ``ticks_raw`` in SQL;
- SSE: every subscriber's ids strictly increase, across the reconnects (with ``Last-Event-ID``) that
  the server's read timeout forces on silent clients, and no subscriber saw one tick twice;
- RSS slope of the server (MB/hour, least squares over /proc samples after the warm-up);
- p99 ack latency (first send -> 202, retries included) in the first vs the last window.

Sizes: quick = 35 s of soak (10 s windows), 20 subscribers; full = 30 minutes (5 minute windows),
100 subscribers; ``CANDLEWICK_SOAK_SECONDS`` overrides the soak duration. ``LATENESS`` is set to a fraction of the warm-up so the dedupe horizon (the
keys a symbol remembers) reaches its steady size before RSS is fitted; with the default
(3,600 s) memory legitimately grows for an hour.
"""

from __future__ import annotations

import gc
import os
import random
import re
import statistics
import time
from array import array

import asyncpg
import httpx
import orjson
import pytest
import trio
from trio_asyncio import aio_as_trio

from candlewick.runtime import machine_busy_seconds, pid_cpu_seconds, tune_gc
from tests.conftest import API_KEY, PG_ADMIN, server_process
from tests.integration.test_pg_faults import assert_aggregates_match_raw, sql, terminate_backends

TICKS_PATH = "/api/v1/webhooks/ticks"
HEADERS = {"x-api-key": API_KEY, "content-type": "application/json"}
SYMBOLS = [f"SOAK{i:02d}" for i in range(50)]
BATCH = 1_000
ID_RE = re.compile(rb"^id: (\d+)$", re.MULTILINE)
TICK_RE = re.compile(rb'"ts":[^,]+,"volume":([^,]+),')


STORED_VS_ACKED = """
WITH acked(b) AS (SELECT DISTINCT unnest($1::bigint[])),
     got AS (SELECT ((volume * 1024)::bigint - 1) / $2 AS b, count(*) AS c FROM ticks_raw GROUP BY 1)
SELECT (SELECT count(*) FROM ticks_raw),
       (SELECT count(*) FROM got JOIN acked USING (b) WHERE c = $2),
       (SELECT coalesce(sum(c), 0) FROM got WHERE b NOT IN (SELECT b FROM acked))
"""
"""Rows in ticks_raw; acknowledged batches whose every key is there; rows of batches never acknowledged."""


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB), in MB per hour."""
    xs, ys = [s[0] for s in samples], [s[1] for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den * 3600 if den else 0.0


def p99(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(0.99 * len(s)))] if s else float("nan")


def overlaps_kill(first: float, seconds: float, kill_times: list[float], reach: float = 1.0) -> bool:
    """Whether a connection kill fell while this request was waiting (or just before it was sent)."""
    return any(first - reach <= k <= first + seconds for k in kill_times)


def latency_series(lat: list[tuple[float, float]], started: float, kill_times: list[float],
                   step: float, scrapes: list[tuple[float, dict]]) -> list[dict]:
    """Per ``step`` seconds of the soak: requests, p50/p99 (ms), p99 of those no kill touched, and the
    server's own view from its histograms (bucket bounds holding the p99 of 202s and of flushes)."""
    out: list[dict] = []
    if not lat:
        return out
    end = max(t for t, _ in lat)
    lo = started
    while lo <= end:
        part = [(t, d) for t, d in lat if lo <= t < lo + step]
        if part:
            clean = [d for t, d in part if not overlaps_kill(t, d, kill_times)]
            out.append({"t": round(lo - started), "n": len(part),
                        "p50": round(statistics.median(d for _, d in part) * 1000, 1),
                        "p99": round(p99([d for _, d in part]) * 1000, 1),
                        "p99_clean": round(p99(clean) * 1000, 1) if clean else None,
                        "kills": sum(1 for k in kill_times if lo <= k < lo + step)})
            near = [h for t, h in scrapes if lo - 1 <= t <= lo + step + 1]
            if len(near) >= 2:
                first, last = near[0], near[-1]
                out[-1]["server_ack_p99_le"] = p99_bound(first["ack"], last["ack"])
                out[-1]["flush_p99_le"] = p99_bound(first["flush"], last["flush"])
                (t0, a), (t1, b) = first["cpu"], last["cpu"]
                if t1 > t0:  # cores busy: the server, the test (load + SSE readers), the machine
                    out[-1]["cpu"] = [round((y - x) / (t1 - t0), 2) for x, y in zip(a, b, strict=True)]
        lo += step
    return out


HIST_RE = re.compile(r'^(candlewick_http_request_seconds|candlewick_flush_seconds)_bucket\{([^}]*)\} (\S+)$',
                     re.MULTILINE)


def histograms(text: str) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts from /ops/metrics: ``ack`` (202s of POST requests) and ``flush``."""
    out: dict[str, dict[float, float]] = {"ack": {}, "flush": {}}
    for name, labels, value in HIST_RE.findall(text):
        if name == "candlewick_http_request_seconds":
            if 'method="POST"' not in labels or 'status="202"' not in labels:
                continue
            which = "ack"
        else:
            which = "flush"
        le = float(re.search(r'le="([^"]+)"', labels).group(1))
        out[which][le] = out[which].get(le, 0.0) + float(value)
    return out


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """(server process, this process, whole machine busy) CPU seconds so far."""
    me = os.times()
    return pid_cpu_seconds(pid) or 0.0, me.user + me.system, machine_busy_seconds()


def p99_bound(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The upper bound (ms) of the histogram bucket that holds the 99th percentile between two scrapes."""
    delta = sorted((le, after.get(le, 0.0) - before.get(le, 0.0)) for le in after)
    if not delta or delta[-1][1] <= 0:
        return None
    total = delta[-1][1]
    return next(le for le, c in delta if c >= 0.99 * total) * 1000


class Load:
    """Builds batches with unique keys; keeps what each client was told."""

    def __init__(self) -> None:
        self.n = 0
        self.rng = random.Random(4242)
        self.acked = array("q")
        """Numbers of the acknowledged batches: batch b holds keys k{1000b+1} .. k{1000b+1000}. Not a set
        of key strings: the cyclic collector walks every entry of a set on each full pass, so tens of
        millions of keys made the load generator itself pause for hundreds of milliseconds."""
        self.accepted = self.duplicates = self.retries = self.requests = 0
        self.latencies: list[tuple[float, float]] = []  # (first send, seconds to 202)

    @property
    def acknowledged(self) -> int:
        return len(self.acked) * BATCH

    def body(self) -> tuple[int, bytes]:
        now = time.time()
        items = []
        batch = self.n // BATCH
        for _ in range(BATCH):
            self.n += 1
            key = f"k{self.n}"
            # volume encodes the tick's number exactly (n / 1024), so an SSE reader can spot a repeat
            items.append({"idempotencyKey": key, "symbol": SYMBOLS[self.n % len(SYMBOLS)],
                          "price": round(100 + 10 * self.rng.random(), 4), "ts": round(now - self.rng.random(), 6),
                          "volume": self.n / 1024})
        return batch, orjson.dumps({"source": "soak", "items": items})

    async def post(self, http: httpx.AsyncClient, url: str) -> None:
        """Post one batch and retry it until 202 (503s and dropped connections are retried)."""
        batch, body = self.body()
        first = time.monotonic()
        for attempt in range(200):
            self.requests += 1
            try:
                r = await http.post(url, content=body, headers=HEADERS)
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code == 202:
                got = r.json()
                assert got["skipped"] == 0, got
                self.accepted += got["accepted"]
                self.duplicates += got["duplicates"]
                self.acked.append(batch)
                self.latencies.append((first, time.monotonic() - first))
                return
            if r is not None:
                assert r.status_code == 503, (r.status_code, r.text)
            self.retries += 1
            await trio.sleep(min(0.05 * (attempt + 1), 0.5))  # client backoff
        raise AssertionError("a batch never got 202 in 200 attempts")


class Subscriber:
    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.events = 0
        self.resyncs = 0
        self.last_id = 0
        self.seen = bytearray()
        self.repeats = 0
        self.order_errors = 0
        self.reconnects = 0

    def feed(self, block: bytes) -> None:
        self.resyncs += block.count(b"event: resync")
        for m in ID_RE.finditer(block):
            eid = int(m.group(1))
            if eid <= self.last_id:
                self.order_errors += 1
            self.last_id = eid
            self.events += 1
        for m in TICK_RE.finditer(block):
            # one symbol's ticks are every len(SYMBOLS)-th number: one bit each
            byte, bit = divmod(round(float(m.group(1)) * 1024) // len(SYMBOLS), 8)
            if byte >= len(self.seen):
                self.seen.extend(bytes(byte - len(self.seen) + 4096))
            if self.seen[byte] & (1 << bit):
                self.repeats += 1
            self.seen[byte] |= 1 << bit

    async def run(self, http: httpx.AsyncClient, base: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Read the stream; when the server ends it (its read timeout cuts silent clients, as the README
        says), reconnect with Last-Event-ID as a browser's EventSource does."""
        while True:
            headers = {"Last-Event-ID": str(self.last_id)} if self.last_id else {}
            try:
                async with http.stream("GET", base + "/realtime/ticks", params={"symbol": self.symbol},
                                       headers=headers) as r:
                    assert r.status_code == 200
                    if task_status is not None:
                        task_status.started()
                        task_status = None
                    buf = b""
                    async for chunk in r.aiter_bytes():
                        buf += chunk
                        cut = buf.rfind(b"\n\n")
                        if cut >= 0:
                            self.feed(buf[:cut + 2])
                            buf = buf[cut + 2:]
            except httpx.TransportError:
                pass
            self.reconnects += 1


@pytest.fixture
def set_client_gc_aside():
    """Sets this (test) process's heap aside from the cyclic collector as the server does its own
    (``tune_gc``), when called; undone at teardown."""
    old = gc.get_threshold()
    yield tune_gc
    gc.unfreeze()
    gc.set_threshold(*old)


async def test_soak_postgres_sse_and_connection_kills(aio, pg_url, tmp_path, size, figure, set_client_gc_aside):
    """Half the measured maximum rate on Postgres with SSE subscribers and killed connections: nothing lost or
    doubled, aggregates exact, SSE ids increasing, RSS flat, p99 ack latency stable."""
    soak_s = float(os.environ.get("CANDLEWICK_SOAK_SECONDS") or size.pick(quick=60.0, full=1800.0))
    window = size.pick(quick=10.0, full=300.0)
    warmup = size.pick(quick=12.0, full=300.0)
    calibrate_s = size.pick(quick=4.0, full=20.0)
    n_subs = size.pick(quick=20, full=100)
    kill_every = size.pick(quick=4.0, full=20.0)
    lateness = size.pick(quick=8, full=120)
    env = {"DATABASE_URL": pg_url, "LATENESS": str(lateness)}
    dbname = pg_url.rsplit("/", 1)[1]
    load = Load()
    rss: list[tuple[float, float]] = []
    kills = {"rounds": 0, "terminated": 0}
    kill_times: list[float] = []
    scrapes: list[tuple[float, dict]] = []

    with server_process(tmp_path, "--no-feeder", env=env) as sp:
        url = sp.base_url + TICKS_PATH
        pid = sp.proc.pid
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as http, \
                httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None), limits=limits) as sse:
            subs = [Subscriber(SYMBOLS[i % len(SYMBOLS)]) for i in range(n_subs)]
            async with trio.open_nursery() as readers:
                for s in subs:
                    await readers.start(s.run, sse, sp.base_url)
                # 1. the maximum rate, with the subscribers connected and reading: 4 clients back to back
                t0 = time.monotonic()
                before = load.acknowledged

                async def flat_out() -> None:
                    while time.monotonic() - t0 < calibrate_s:
                        await load.post(http, url)

                async with trio.open_nursery() as n:
                    for _ in range(4):
                        n.start_soon(flat_out)
                max_rate = (load.acknowledged - before) / (time.monotonic() - t0)
                rate = max_rate / 2
                interval = BATCH / rate
                soak_latency_from = len(load.latencies)

                # 2. the soak. The load generator's own full collections (every few seconds at the
                # default thresholds, tens of ms over this process's heap) would show up as ack latency:
                # everything alive now is set aside, and the youngest generation collected less often.
                set_client_gc_aside()
                started = time.monotonic()
                end = started + soak_s
                late = 0

                async def sample_rss() -> None:
                    while time.monotonic() < end:
                        rss.append((time.monotonic() - started, rss_mb(pid)))
                        await trio.sleep(1.0)  # sampling period, not synchronisation

                async def scrape() -> None:
                    step = window / 5
                    k = 0
                    while True:
                        r = await http.get(sp.base_url + "/ops/metrics")
                        h = histograms(r.text)
                        h["cpu"] = (time.monotonic(), cpu_seconds(pid))
                        scrapes.append((started + k * step, h))
                        k += 1
                        if started + k * step > end + 0.5:
                            return
                        await trio.sleep(max(0.0, started + k * step - time.monotonic()))  # sampling period

                async def killer() -> None:
                    admin = await aio_as_trio(asyncpg.connect)(PG_ADMIN, timeout=10)
                    rng = random.Random(99)
                    try:
                        while True:
                            await trio.sleep(kill_every * rng.uniform(0.5, 1.5))  # jittered moments
                            if time.monotonic() > end - 1:
                                return
                            kills["rounds"] += 1
                            kill_times.append(time.monotonic())
                            kills["terminated"] += await terminate_backends(admin, dbname)
                    finally:
                        await aio_as_trio(admin.close)()

                async with trio.open_nursery() as n:
                    n.start_soon(sample_rss)
                    n.start_soon(killer)
                    n.start_soon(scrape)
                    limiter = trio.CapacityLimiter(64)

                    async def one() -> None:
                        async with limiter:
                            await load.post(http, url)

                    k = 0
                    while True:
                        due = started + k * interval
                        if due >= end:
                            break
                        now = time.monotonic()
                        if due > now:
                            await trio.sleep(due - now)  # the open-loop schedule
                        elif now - due > interval:
                            late += 1
                        if limiter.available_tokens == 0:
                            late += 1
                        n.start_soon(one)
                        k += 1
                readers.cancel_scope.cancel()
            soak_wall = time.monotonic() - started
        log = sp.log()

    # 3. what is stored
    [[rows, complete, extra]] = await sql(pg_url, STORED_VS_ACKED, list(load.acked), BATCH)
    lost = load.acknowledged - complete * BATCH
    assert not lost, f"{lost} acknowledged ticks missing from ticks_raw"
    assert not extra, f"{extra} ticks in ticks_raw were never acknowledged"
    assert rows == load.acknowledged  # and ticks_raw's primary key holds each key once
    assert load.accepted <= rows, f"receipts accepted {load.accepted} ticks, ticks_raw has {rows}: counted twice"
    buckets = await assert_aggregates_match_raw(pg_url)
    [[ohlc_count]] = await sql(pg_url, "SELECT sum(count) FROM ohlc_1m")
    assert ohlc_count == rows

    # 4. SSE, memory, latency
    events = sum(s.events for s in subs)
    assert all(s.order_errors == 0 for s in subs), "an SSE subscriber saw ids that did not increase"
    assert all(s.repeats == 0 for s in subs), f"SSE repeated ticks: {sum(s.repeats for s in subs)}"
    assert events > 0 and all(s.events > 0 for s in subs), "a subscriber received nothing"
    after_warmup = [(t, m) for t, m in rss if t >= warmup]
    slope = slope_per_hour(after_warmup)
    growth = after_warmup[-1][1] - after_warmup[0][1]
    lat = load.latencies[soak_latency_from:]
    first = [d for t, d in lat if t - started < window]
    last = [d for t, d in lat if t - started >= soak_s - window]
    p99_first, p99_last = p99(first), p99(last)
    clean_first = [d for t, d in lat if t - started < window and not overlaps_kill(t, d, kill_times)]
    clean_last = [d for t, d in lat if t - started >= soak_s - window and not overlaps_kill(t, d, kill_times)]
    series = latency_series(lat, started, kill_times, window / 5, scrapes)
    assert first and last
    assert kills["terminated"] > 0, "no server connection was ever killed"
    flush_failures = log.count('"flush_failed"')
    # bounds with room for a shared, noisy machine; the figures are what matter
    assert p99_last <= max(4 * p99_first, p99_first + 1.0), f"p99 ack latency {p99_first:.3f} -> {p99_last:.3f} s"
    # quick: a minute at half the maximum rate is still the ramp to the plateau (the full run, at
    # ~17,000 ticks/s, reached it after ~200 s), so its bound only catches a gross leak
    assert growth < size.pick(quick=300, full=200), f"RSS grew {growth:.0f} MB after the warm-up"
    if size.full:
        assert slope < 50, f"RSS slope {slope:.1f} MB/hour"

    figure(f"soak {soak_wall:.0f} s at {rate:.0f} ticks/s (half the {max_rate:.0f}/s measured with the subscribers "
           f"reading), {n_subs} SSE subscribers, {kills['terminated']} connections killed: "
           f"{load.acknowledged} ticks acknowledged, 0 lost, 0 doubled, aggregates exact ({buckets} buckets)",
           value=0, acknowledged=load.acknowledged, stored=rows, accepted=load.accepted,
           duplicates=load.duplicates, retries=load.retries, requests=load.requests, max_rate=round(max_rate),
           rate=round(rate), kills=kills["rounds"], terminated=kills["terminated"], late_starts=late,
           flush_failures_logged=flush_failures)
    note = "" if size.full else " (quick: too short to leave the warm-up; RSS reaches its plateau after a few " \
                                "minutes, so read the full run's slope)"
    figure(f"RSS slope {slope:+.1f} MB/hour after a {warmup:.0f} s warm-up ({after_warmup[0][1]:.0f} -> "
           f"{after_warmup[-1][1]:.0f} MB over {after_warmup[-1][0] - after_warmup[0][0]:.0f} s){note}",
           value=round(slope, 1), samples=len(after_warmup), growth_mb=round(growth, 1),
           rss_mb=[[round(t), round(m, 1)] for t, m in rss[::max(1, len(rss) // 60)]])
    figure(f"p99 ack latency first {window:.0f} s {p99_first * 1000:.0f} ms vs last {window:.0f} s "
           f"{p99_last * 1000:.0f} ms (median {statistics.median(first) * 1000:.0f} / "
           f"{statistics.median(last) * 1000:.0f} ms); requests no connection kill touched: p99 "
           f"{p99(clean_first) * 1000:.0f} vs {p99(clean_last) * 1000:.0f} ms ({len(first) - len(clean_first)} / "
           f"{len(last) - len(clean_last)} touched)", value=round(p99_last * 1000),
           p99_first_ms=round(p99_first * 1000), p99_last_ms=round(p99_last * 1000),
           p99_clean_first_ms=round(p99(clean_first) * 1000), p99_clean_last_ms=round(p99(clean_last) * 1000),
           series=series)
    figure(f"SSE: {n_subs} subscribers got {events} events, ids strictly increasing across "
           f"{sum(s.reconnects for s in subs)} reconnects (Last-Event-ID), 0 repeated ticks, "
           f"{sum(s.resyncs for s in subs)} resyncs", value=events, resyncs=sum(s.resyncs for s in subs),
           reconnects=sum(s.reconnects for s in subs))
