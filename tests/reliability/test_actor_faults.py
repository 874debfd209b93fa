"""Item 7: a crashing symbol actor, in virtual time (trio's MockClock).

- A symbol actor that raises is restarted within 100 ms, rebuilds exactly the state it lost,
  and the other symbols keep committing meanwhile, with no gap and no refusal.
- Past its restart intensity the actor is failed: its symbol answers 503 SYMBOL_FAILED,
  readiness answers 503 naming it, the other symbols still work, and exactly one structured
  error is logged.

The store answers with a database-like latency (``LatencyStore``), so the restart time is a
measured figure rather than zero. Faults are injected as in tests/actors/test_engine.py: the
book's ``apply`` raises for a chosen symbol (a bug inside that one actor).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from itertools import pairwise
from typing import ClassVar

import pytest
import structlog
import trio
import trio.testing

from candlewick.domain import BookTable
from candlewick.engine import Engine
from candlewick.errors import ActorCrashed, SymbolFailed, Unavailable
from candlewick.http._app import create_app
from candlewick.schema import Tick
from candlewick.storage import MemoryStore
from tests._faults import faulty_apply, row_state
from tests.conftest import make_config

T0 = 1_730_425_200
WRITE_LATENCY = 0.002
LOAD_LATENCY = 0.010
CADENCE = 0.010  # the other symbol's producer posts one tick every 10 ms


def ticks(symbol: str, n: int, start: int = 0, spacing: float = 20.0) -> list[Tick]:
    """Distinct keys and trade times, spread over several minutes (bars and SMA10 to rebuild)."""
    return [Tick(f"{symbol}-{i}", symbol, 100.0 + (i * 13 % 29) / 4, T0 + i * spacing + 0.125, (i % 5) / 2)
            for i in range(start, start + n)]


class LatencyStore(MemoryStore):
    """The memory store behind a database's latency (virtual time): 2 ms a write, 10 ms a book load."""

    async def write(self, batch):
        await trio.sleep(WRITE_LATENCY)
        await super().write(batch)

    async def load_book(self, symbol, lateness):
        await trio.sleep(LOAD_LATENCY)
        return await super().load_book(symbol, lateness)


@pytest.fixture
def faults(monkeypatch):
    """``faults.doomed[symbol] = n``: the next n applies of that symbol raise. ``faults.state(symbol)``:
    its book now; ``faults.books[symbol]``: every book rebuilt for it, with the virtual time it was
    rebuilt at; ``faults.crashes[symbol]``: crash times."""

    class Faults:
        doomed: ClassVar[Counter[str]] = Counter()
        books: ClassVar[dict[str, list[tuple[float, tuple]]]] = {}
        crashes: ClassVar[dict[str, list[float]]] = {}
        tables: ClassVar[list[BookTable]] = []

        @classmethod
        def state(cls, symbol: str) -> tuple:
            return next(row_state(t, symbol) for t in cls.tables if t.row(symbol) is not None)

    real_init, real_seed = BookTable.__init__, BookTable.seed

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        Faults.tables.append(self)

    def seed(self, row, seed):
        real_seed(self, row, seed)
        symbol = self.symbols[row]
        Faults.books.setdefault(symbol, []).append((trio.current_time(), row_state(self, symbol)))

    monkeypatch.setattr(BookTable, "apply", faulty_apply(Faults.doomed, Faults.crashes, trio.current_time))
    monkeypatch.setattr(BookTable, "__init__", init)
    monkeypatch.setattr(BookTable, "seed", seed)
    return Faults


@pytest.fixture
def error_log():
    """Every log record at WARNING or above, rendered as the production JSON line."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()],
        foreign_pre_chain=[structlog.processors.add_log_level, structlog.stdlib.add_logger_name])
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [(r, formatter.format(r)) for r in records]
    finally:
        root.removeHandler(handler)


async def test_crashed_actor_restarts_within_100ms_rebuilds_same_state_others_see_no_gap(
        nursery, autojump_clock, faults, figure):
    """A's actor raises: it is running again within 100 ms (virtual), with a book equal to the one it
    lost; B, posting every 10 ms throughout, has every tick acknowledged with no gap in its commits."""
    eng = await nursery.start(Engine(make_config(), LatencyStore()).run)
    assert (await eng.submit(ticks("A", 40) + ticks("B", 40))).accepted == 80  # ~13 minutes of each
    await trio.testing.wait_all_tasks_blocked()
    before = faults.state("A")
    assert len(before[0]) >= 10 and before[1] == 40  # SMA10 has a full window to rebuild

    b_results: list[tuple[float, float, bool]] = []  # (sent, acknowledged, ok)
    b_events: list[float] = []
    sub = eng.hub.subscribe(frozenset({"B"}), None)
    crashed = trio.Event()
    outcome = {}

    async def producer_b() -> None:
        for i in range(60):
            sent = trio.current_time()
            try:
                await eng.submit(ticks("B", 1, start=100 + i))
                b_results.append((sent, trio.current_time(), True))
            except Unavailable:
                b_results.append((sent, trio.current_time(), False))
            await trio.sleep_until(sent + CADENCE)

    async def crash_a() -> None:
        await trio.sleep(0.2)  # virtual time (autojump clock): the crash comes ~20 of B's posts in
        faults.doomed["A"] = 1
        try:
            await eng.submit(ticks("A", 3, start=40))
        except ActorCrashed as exc:
            outcome["code"] = exc.code
        crashed.set()

    async with trio.open_nursery() as inner:
        inner.start_soon(producer_b)
        inner.start_soon(crash_a)
    await trio.testing.wait_all_tasks_blocked()
    for frame in sub.take().split(b"\n\n"):
        if frame.startswith(b"id: "):
            b_events.append(json.loads(frame.split(b"data: ", 1)[1])["ts"])
    eng.hub.unsubscribe(sub)

    # restarted quickly, with the state it lost
    assert outcome.get("code") == "ACTOR_RESTARTED"
    [crash_at] = faults.crashes["A"]
    rebuilt_at, rebuilt = next((t, b) for t, b in faults.books["A"] if t >= crash_at)
    restart_ms = (rebuilt_at - crash_at) * 1000
    assert restart_ms <= 100, f"restarted after {restart_ms:.1f} ms of virtual time"
    slot = eng.router.slots["A"]
    assert (slot.state.status, slot.state.restarts) == ("running", 1)
    after = rebuilt
    assert after == before, "the rebuilt book differs from the one the crash lost"
    receipt = await eng.submit(ticks("A", 43))  # the crashed request's retry: applied, not duplicates
    assert (receipt.accepted, receipt.duplicates) == (3, 40)

    # the other symbol: every tick acknowledged, commits at an even cadence through the crash
    assert len(b_results) == 60 and all(ok for _, _, ok in b_results), "B saw refusals during A's crash"
    acks = [a for _, a, _ in b_results]
    latency_ms = [(a - s) * 1000 for s, a, _ in b_results]
    gaps_ms = [(b - a) * 1000 for a, b in pairwise(acks)]
    during = [lat for (s, a, _), lat in zip(b_results, latency_ms, strict=True) if crash_at - CADENCE <= s <= rebuilt_at]
    assert during, "no B tick was in flight during A's crash and restart"
    assert max(gaps_ms) <= CADENCE * 1000 + 5, f"B's commits stalled: largest gap {max(gaps_ms):.1f} ms"
    assert max(latency_ms) <= 2 * WRITE_LATENCY * 1000 + 1, f"B's ack latency rose to {max(latency_ms):.1f} ms"
    assert len(b_events) == 60 and b_events == sorted(b_events), "B's SSE stream missed or reordered ticks"
    assert eng.router.slots["B"].state.restarts == 0

    figure(f"actor restarted {restart_ms:.1f} ms (virtual) after its crash (<= 100 ms; book load takes "
           f"{LOAD_LATENCY * 1000:.0f} ms), rebuilt book identical ({len(after[0])} bars, {after[1]} keys)",
           value=round(restart_ms, 1), bars=len(after[0]), keys=after[1])
    figure(f"other symbol during the crash: {len(acks)}/60 ticks acknowledged, 0 refused, largest gap between "
           f"commits {max(gaps_ms):.1f} ms at a {CADENCE * 1000:.0f} ms cadence, max ack latency "
           f"{max(latency_ms):.1f} ms ({len(during)} in flight during the restart)",
           value=round(max(gaps_ms), 1), acknowledged=len(acks), max_latency_ms=round(max(latency_ms), 1))


async def test_past_restart_intensity_actor_is_failed_readiness_says_so_one_error_logged(
        nursery, autojump_clock, faults, error_log, figure):
    """max_restarts=2 in 60 s: the third crash marks A failed; A then answers SYMBOL_FAILED, readiness
    is 503 naming symbol:A, B keeps working, and exactly one structured error line is logged."""
    eng = await nursery.start(Engine(make_config(max_restarts=2, restart_period=60), LatencyStore()).run)
    app = create_app(eng)
    client = app.test_client()
    assert (await eng.submit(ticks("A", 5) + ticks("B", 5))).accepted == 10
    r = await client.get("/health/readiness")
    assert r.status_code == 200, await r.get_data()

    faults.doomed["A"] = 1_000  # every apply of A raises from now on
    codes = []
    for i in range(3):
        try:
            await eng.submit(ticks("A", 1, start=10 + i))
        except Unavailable as exc:
            codes.append(exc.code)
        assert (await eng.submit(ticks("B", 1, start=10 + i))).accepted == 1  # B is untouched
    assert codes == ["ACTOR_RESTARTED"] * 3
    await trio.testing.wait_all_tasks_blocked()
    slot = eng.router.slots["A"]
    assert (slot.state.status, slot.state.restarts) == ("failed", 3)
    assert eng.router.failed_symbols() == ["A"]
    with pytest.raises(SymbolFailed):
        await eng.submit(ticks("A", 1, start=20))
    assert len(faults.crashes["A"]) == 3, "a failed actor must not run (or crash) again"
    assert (await eng.submit(ticks("B", 3, start=20))).accepted == 3
    crash_span_ms = (faults.crashes["A"][-1] - faults.crashes["A"][0]) * 1000

    r = await client.get("/health/readiness")
    body = json.loads(await r.get_data())
    assert r.status_code == 503, body
    assert body["status"] == "not_ready" and body["checks"]["engine"] == "fail", body
    assert body.get("failedActors") == ["symbol:A"], body
    tree = json.loads(await (await client.get("/ops/health/supervisor")).get_data())
    [node] = [c for c in tree["children"][0]["children"] if c["name"] == "symbol:A"]
    assert (node["state"], node["restarts"]) == ("failed", 3), node

    logged = error_log()
    errors = [(rec, line) for rec, line in logged if rec.levelno >= logging.ERROR]
    assert len(errors) == 1, f"{len(errors)} error lines: {[line for _, line in errors]}"
    [(_, line)] = errors
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["event"] == "actor_failed" and entry["level"] == "error", entry
    assert (entry["actor"], entry["restarts"], entry["max_restarts"]) == ("symbol:A", 3, 2), entry
    assert "injected fault in A" in entry["error"] and "RuntimeError" in entry.get("exception", ""), entry
    restarting = [json.loads(line) for r, line in logged if r.levelno == logging.WARNING]
    assert [e["event"] for e in restarting].count("actor_restarting") == 2

    figure(f"failed after 3 crashes in {crash_span_ms:.0f} ms (max_restarts=2 per 60 s): SYMBOL_FAILED for its "
           f"symbol, readiness 503 failedActors={body['failedActors']}, other symbol unaffected, exactly 1 "
           f"structured error logged ({entry['event']})", value=1, crashes=3, readiness=r.status_code,
           error_lines=len(errors), crash_span_ms=round(crash_span_ms, 1))
    assert math.isfinite(crash_span_ms)
