"""The actor runtime under trio's MockClock: supervision, backpressure, drained shutdown."""

from __future__ import annotations

from collections import Counter

import pytest
import trio
import trio.testing

from candlewick.domain import BookTable
from candlewick.engine import Engine
from candlewick.errors import Overloaded, SymbolFailed
from candlewick.schema import Tick
from candlewick.storage import MemoryStore
from tests._faults import faulty_apply
from tests.conftest import make_config

T0 = 1_730_425_200


def ticks(symbol, n, start=0, ts=T0):
    return [Tick(f"{symbol}-{i}", symbol, 100.0 + i, ts + i * 0.01, 1.0) for i in range(start, start + n)]


@pytest.fixture
def crash_on(monkeypatch):
    """Make the book table raise for chosen symbols (a bug inside one actor): ``crash_on[symbol] = n``."""
    doomed: Counter[str] = Counter()
    monkeypatch.setattr(BookTable, "apply", faulty_apply(doomed))
    return doomed


async def start(nursery, **overrides):
    return await nursery.start(Engine(make_config(**overrides)).run)


async def test_crash_restarts_only_that_actor_and_keeps_its_state(nursery, autojump_clock, crash_on):
    """One actor's crash fails its request (503), restarts it quickly with state rebuilt; others are untouched."""
    eng = await start(nursery)
    await eng.submit(ticks("A", 5) + ticks("B", 5))
    crash_on["A"] = 1
    before = trio.current_time()
    with pytest.raises(Exception) as exc:
        await eng.submit(ticks("A", 3, start=5))
    assert exc.value.code == "ACTOR_RESTARTED"
    assert (await eng.submit(ticks("B", 3, start=5))).accepted == 3
    receipt = await eng.submit(ticks("A", 8))  # 5 old keys are remembered after the rebuild
    assert (receipt.accepted, receipt.duplicates) == (3, 5)
    assert trio.current_time() - before < 0.1
    slots = eng.router.slots
    assert (slots["A"].state.restarts, slots["A"].state.status) == (1, "running")
    assert (slots["B"].state.restarts, slots["B"].state.status) == (0, "running")
    bar = (await eng.store.bars_before("A", float("inf"), 1))[0]
    assert bar.count == 8


async def test_restart_intensity_marks_actor_failed(nursery, autojump_clock, crash_on):
    """Past max_restarts within the period an actor is failed; its symbol answers 503, others work."""
    eng = await start(nursery, max_restarts=2, restart_period=60)
    await eng.submit(ticks("A", 1) + ticks("B", 1))
    crash_on["A"] = 100
    for _ in range(3):
        with pytest.raises(Exception):
            await eng.submit(ticks("A", 1, start=1))
    assert eng.router.slots["A"].state.status == "failed"
    assert eng.router.failed_symbols() == ["A"]
    with pytest.raises(SymbolFailed):
        await eng.submit(ticks("A", 1, start=2))
    assert (await eng.submit(ticks("B", 2, start=1))).accepted == 2


async def test_crashes_spread_over_time_do_not_exhaust_intensity(nursery, autojump_clock, crash_on):
    """Crashes further apart than the period never add up to a failure."""
    eng = await start(nursery, max_restarts=1, restart_period=10)
    for i in range(4):
        crash_on["A"] = 1
        with pytest.raises(Exception):
            await eng.submit(ticks("A", 1, start=i))
        await trio.sleep(11)
    assert eng.router.slots["A"].state.status == "running"
    assert eng.router.slots["A"].state.restarts == 4


class SlowStore(MemoryStore):
    """A memory store whose writes wait until released: a stalled database."""

    def __init__(self):
        super().__init__()
        self.gate = trio.Event()
        self.writes = 0

    async def write(self, batch):
        await self.gate.wait()
        self.writes += 1
        await super().write(batch)


async def test_backpressure_makes_producers_wait_then_refuses_whole(nursery, autojump_clock):
    """With the store stalled, admission caps ticks in flight; a request that cannot be admitted in time gets
    OVERLOADED and nothing of it is applied, and memory stays at the bound."""
    store = SlowStore()
    cfg = make_config(max_in_flight_ticks=1000, ingest_deadline=2.0, ack_deadline=1000)
    eng = await nursery.start(Engine(cfg, store).run)
    store.gate.set()
    await eng.submit(ticks("A", 1))  # the actor exists and has rebuilt
    store.gate = trio.Event()
    done = []

    async def producer(i):
        done.append(await eng.submit(ticks(f"P{i % 3}", 300, start=i * 1000)))

    for i in range(3):
        nursery.start_soon(producer, i)
    await trio.testing.wait_all_tasks_blocked()
    assert eng.router.admission.in_use == 900
    with pytest.raises(Overloaded):
        await eng.submit(ticks("Z", 200))
    assert eng.router.admission.peak <= 1000
    assert "Z" not in eng.router.slots or not (await eng.store.latest("Z"))
    store.gate.set()
    await trio.testing.wait_all_tasks_blocked()
    assert [r.accepted for r in done] == [300, 300, 300]
    assert eng.router.admission.in_use == 0
    assert (await eng.submit(ticks("Z", 200))).accepted == 200


async def test_waiting_producer_is_admitted_when_room_frees(nursery, autojump_clock):
    """A producer that waits (not past its deadline) is admitted once earlier work commits."""
    store = SlowStore()
    eng = await nursery.start(Engine(make_config(max_in_flight_ticks=100, ingest_deadline=30), store).run)
    results = []

    async def producer(name):
        results.append((await eng.submit(ticks(name, 80))).accepted)

    nursery.start_soon(producer, "A")
    await trio.testing.wait_all_tasks_blocked()
    nursery.start_soon(producer, "B")
    await trio.testing.wait_all_tasks_blocked()
    assert eng.router.admission.in_use == 80 and results == []
    await trio.sleep(5)  # virtual time: B keeps waiting within its 30 s deadline
    assert results == []
    store.gate.set()
    await trio.testing.wait_all_tasks_blocked()
    assert results == [80, 80]


async def test_stop_drains_everything_admitted(nursery, autojump_clock):
    """Stopping the engine commits every tick already admitted before run() returns."""
    store = SlowStore()
    eng = await nursery.start(Engine(make_config(), store).run)
    results = []

    async def producer(name):
        results.append(await eng.submit(ticks(name, 50)))

    for name in "ABCDE":
        nursery.start_soon(producer, name)
    await trio.testing.wait_all_tasks_blocked()
    eng.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert eng.state == "draining"
    store.gate.set()
    with trio.fail_after(5):
        await eng.wait_stopped()
    assert sorted(r.accepted for r in results) == [50] * 5
    assert store.statistics().raw_ticks == 250
    with pytest.raises(Overloaded):
        await eng.submit(ticks("F", 1))


async def test_mailbox_depth_and_peak_visible(nursery, autojump_clock):
    """The supervision tree shows each actor's mailbox depth, peak and capacity."""
    store = SlowStore()
    eng = await nursery.start(Engine(make_config(mailbox_capacity=8), store).run)
    store.gate.set()
    await eng.submit(ticks("A", 1))
    store.gate = trio.Event()
    for i in range(6):
        nursery.start_soon(eng.submit, ticks("A", 1, start=10 + i))
    await trio.testing.wait_all_tasks_blocked()
    [child] = eng.tree()["children"][0]["children"]
    assert child["name"] == "symbol:A" and child["mailbox"]["capacity"] == 8
    assert child["mailbox"]["peak"] >= 1
    store.gate.set()


class FlakyStore(MemoryStore):
    """A memory store that can be switched off: writes and reads raise like a lost database."""

    def __init__(self):
        super().__init__()
        self.down = False

    async def write(self, batch):
        if self.down:
            raise ConnectionError("store is down")
        await super().write(batch)

    async def load_book(self, symbol, lateness):
        if self.down:
            raise ConnectionError("store is down")
        return await super().load_book(symbol, lateness)


async def test_store_outage_answers_503_and_spends_no_key(nursery, autojump_clock):
    """While the store is down requests get STORE_UNAVAILABLE and nothing is applied; once it is back,
    the client's retry of the same ticks is applied (not reported as duplicates) and counted once."""
    from candlewick.errors import StoreUnavailable

    store = FlakyStore()
    eng = await nursery.start(Engine(make_config(ack_deadline=2.0), store).run)
    assert (await eng.submit(ticks("A", 2))).accepted == 2
    store.down = True
    with pytest.raises(StoreUnavailable):
        await eng.submit(ticks("A", 5, start=2))
    with pytest.raises(StoreUnavailable):  # the actor now rebuilds and cannot read: still 503
        await eng.submit(ticks("A", 5, start=2))
    assert eng.router.slots["A"].state.status == "running"  # an outage is not a crash loop
    store.down = False
    await trio.sleep(3)
    receipt = await eng.submit(ticks("A", 7))
    assert (receipt.accepted, receipt.duplicates) == (5, 2)
    bar = (await store.bars_before("A", float("inf"), 1))[0]
    assert bar.count == 7
    await trio.testing.wait_all_tasks_blocked()
    assert eng.hub.last_id - eng.hub.replay.first(eng.hub.last_id) + 1 == 7  # each committed tick published once


class DelayStore(MemoryStore):
    """A memory store whose every write takes ``delay`` seconds (virtual time)."""

    def __init__(self, delay):
        super().__init__()
        self.delay = delay

    async def write(self, batch):
        await trio.sleep(self.delay)
        await super().write(batch)


async def test_request_whose_write_began_waits_past_its_deadline(nursery, autojump_clock):
    """A request whose write has begun before its deadline gets that write's outcome (202), even
    when the write ends after the deadline, instead of a 503 for ticks that do get committed."""
    store = DelayStore(0.8)
    eng = await nursery.start(Engine(make_config(ack_deadline=1.0), store).run)
    await eng.submit(ticks("A", 1))
    results = {}

    async def post(name, n):
        started = trio.current_time()
        results[name] = (await eng.submit(ticks(name, n)), trio.current_time() - started)

    nursery.start_soon(post, "R1", 2)
    await trio.testing.wait_all_tasks_blocked()  # R1's write has begun: it holds the flusher for 0.8 s
    await post("R2", 3)  # its write starts when R1's ends and takes 0.8 s more
    receipt, waited = results["R2"]
    assert receipt.accepted == 3 and waited > 1.0  # past its 1.0 s deadline, and applied
    assert (await store.latest("R2")) is not None


async def test_concurrent_requests_for_a_symbol_are_applied_together_with_their_own_counts(nursery, autojump_clock):
    """Requests for one symbol that arrive together are applied in one dispatcher pass, and each receipt
    still counts its own duplicates: a key in both is new for whichever arrived first, a duplicate for
    the other."""
    eng = await start(nursery)
    await eng.submit(ticks("A", 1))
    passes = eng.router.dispatchers[0].passes
    results = []

    async def post(batch):
        results.append(await eng.submit(batch))

    nursery.start_soon(post, ticks("A", 5, start=10))
    nursery.start_soon(post, ticks("A", 5, start=12))  # A-12..A-14 are in both
    await trio.testing.wait_all_tasks_blocked()
    assert eng.router.dispatchers[0].passes - passes == 1
    assert sorted((r.accepted, r.duplicates) for r in results) == [(2, 3), (5, 0)]
    bar = (await eng.store.bars_before("A", float("inf"), 1))[0]
    assert bar.count == 1 + 7


async def test_crash_with_joined_requests_fails_each_of_them(nursery, autojump_clock, crash_on):
    """A crash while applying requests joined in one pass answers each of them 503 ACTOR_RESTARTED,
    with nothing of them applied: their retries are all accepted."""
    eng = await start(nursery)
    await eng.submit(ticks("A", 1))
    crash_on["A"] = 1
    codes = []

    async def post(batch):
        with pytest.raises(Exception) as exc:
            await eng.submit(batch)
        codes.append(exc.value.code)

    nursery.start_soon(post, ticks("A", 3, start=10))
    nursery.start_soon(post, ticks("A", 3, start=20))
    await trio.testing.wait_all_tasks_blocked()
    assert codes == ["ACTOR_RESTARTED", "ACTOR_RESTARTED"]
    receipt = await eng.submit(ticks("A", 3, start=10) + ticks("A", 3, start=20))
    assert (receipt.accepted, receipt.duplicates) == (6, 0)
    assert eng.router.slots["A"].state.restarts == 1
