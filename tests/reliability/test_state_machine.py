"""Item 6: a hypothesis state machine over a running engine, checking exactly-once after every step.

Rules: ingest batches (duplicates, out-of-order trade times, all within the lateness horizon),
retry a refused request, replay an acknowledged one, crash a symbol actor, take the store down
(now, or after a few more writes) and bring it back, let virtual time pass, flush, and read,
drop and resume an SSE subscription with ``Last-Event-ID``.

Invariants, after every step:

- acknowledged = persisted + in flight: every tick of a 202 is stored; every stored tick was
  acknowledged, or belongs to a request still waiting. A refused single-symbol request had
  nothing applied. A refused request spanning several symbols may have had another symbol's
  part committed (symbols commit in separate writes): its 503 then says how many
  (``test_refused_multi_symbol_request_says_what_was_committed``); it is counted here, and it is
  harmless for exactly-once because the client's retry dedupes it.
- no tick applied twice: each key is stored once, published once, and counted ``accepted`` at
  most once over all receipts;
- the stored candles equal a recomputation from the unique stored ticks, and every published
  event's candle and SMA10 equal a recomputation from the ticks committed before it (so a
  rebuilt actor continues from exactly the state it lost);
- SSE: the ids a client sees strictly increase, across reconnects, and a jump is always
  preceded by ``event: resync``; each frame equals the event that was published under its id.

How trio is driven from hypothesis' synchronous state machine: each example runs one
``trio.run`` on a thread of its own (``TrioThread``); a rule hands it one operation and waits
for the result. The memory-store machine uses ``MockClock``: virtual time moves only inside
the ``advance``/``flush`` rules (autojump switched on for their duration), every operation
ends with ``wait_all_tasks_blocked``, and trio's scheduler randomness is registered with
hypothesis, so an example replays exactly. The Postgres machine runs on the real clock with
every request awaited (a real database cannot be quiesced in virtual time).
"""

from __future__ import annotations

import concurrent.futures
import math
import re
import threading
import time
from collections import Counter
from contextlib import asynccontextmanager
from unittest import mock

import hypothesis
import orjson
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from candlewick.domain import SMA_N, BookTable, bucket_of
from candlewick.engine import Engine
from candlewick.errors import Unavailable
from candlewick.schema import Tick
from candlewick.storage import MemoryStore
from tests._faults import faulty_apply
from tests.conftest import make_config

# -- the ticks: a fixed pool of identities, so a key always means the same trade -------------------
T0 = 1_730_425_200  # a minute boundary
SYMBOLS = ("A", "B", "C")
POOL = 120


def identity(i: int) -> Tick:
    """Tick ``i``: trade times distinct over the whole pool (61 is prime to 900) across 15 minutes,
    prices and volumes exact binary fractions, so sums in any order are exact."""
    return Tick(f"t{i:03d}", SYMBOLS[i % len(SYMBOLS)], 100.0 + (i * 37 % 97) / 4, T0 + (i * 61 % 900) + 0.125,
                (i % 7) / 2)


TICKS = [identity(i) for i in range(POOL)]
BY_TS = {(t.symbol, t.ts): t for t in TICKS}
assert len(BY_TS) == POOL

# -- crash injection: the book table raises for a doomed symbol (as tests/actors/test_engine.py) -----
DOOMED: Counter[str] = Counter()
_apply_or_crash = faulty_apply(DOOMED)


class FaultyStore:
    """The real store behind a switch: while ``down``, writes and book loads raise like a lost
    database. ``fail_after(n)`` lets n more writes through, then goes down (mid-stream)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.down = False
        self.writes_left: int | None = None
        self.failed_writes = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def fail_after(self, n: int) -> None:
        self.writes_left = n
        if n == 0:
            self.down = True

    def up(self) -> None:
        self.down = False
        self.writes_left = None

    async def write(self, batch) -> None:
        if not self.down and self.writes_left is not None:
            if self.writes_left == 0:
                self.down = True
            self.writes_left -= 1
        if self.down:
            self.failed_writes += 1
            raise ConnectionError("injected store outage")
        await self.inner.write(batch)

    async def load_book(self, symbol, lateness):
        if self.down:
            raise ConnectionError("injected store outage")
        return await self.inner.load_book(symbol, lateness)


# -- driving trio from a synchronous caller ------------------------------------------------------------
class TrioThread:
    """One ``trio.run`` on its own thread; ``call`` runs one async operation in it and returns its
    result (or raises its exception). The run ends with ``close``; if it dies, the next call raises."""

    def __init__(self, *, clock=None, loop_context=None) -> None:
        self._started = threading.Event()
        self.error: BaseException | None = None
        self._loop_context = loop_context
        self._thread = threading.Thread(target=self._main, args=(clock,), daemon=True, name="trio-machine")
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the trio thread did not start")
        if self.error is not None:
            raise RuntimeError("the trio thread failed to start") from self.error

    def _main(self, clock) -> None:
        try:
            trio.run(self._root, clock=clock)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.error = exc
        finally:
            self._started.set()

    async def _root(self) -> None:
        @asynccontextmanager
        async def nothing():
            yield

        async with (self._loop_context or nothing)(), trio.open_nursery() as nursery:
            self.nursery = nursery
            self.token = trio.lowlevel.current_trio_token()
            self._close = trio.Event()
            self._inbox, inbox = trio.open_memory_channel(math.inf)
            # Operations are spawned by a task inside the loop context (trio-asyncio's loop is a
            # context variable; run_sync_soon callbacks run outside it).
            nursery.start_soon(self._dispatch, inbox)
            self._started.set()
            await self._close.wait()
            nursery.cancel_scope.cancel()

    async def _dispatch(self, inbox) -> None:
        async for task in inbox:
            self.nursery.start_soon(task)

    def call(self, afn, *args, timeout: float = 120.0):
        fut: concurrent.futures.Future = concurrent.futures.Future()

        async def task() -> None:
            try:
                fut.set_result(await afn(*args))
            except BaseException as exc:
                fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

        def spawn() -> None:
            try:
                self._inbox.send_nowait(task)
            except trio.ClosedResourceError as exc:
                fut.set_exception(exc)

        try:
            self.token.run_sync_soon(spawn)
        except trio.RunFinishedError:
            raise RuntimeError("the trio run has ended") from self.error
        deadline = time.monotonic() + timeout
        while True:
            try:
                return fut.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                if not self._thread.is_alive():
                    raise RuntimeError("the trio run ended during the operation") from self.error
                if time.monotonic() > deadline:
                    raise RuntimeError(f"operation {afn!r} did not finish in {timeout}s") from None

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                self.token.run_sync_soon(self._close.set)
            except trio.RunFinishedError:
                pass
            self._thread.join(30)


# -- the model -------------------------------------------------------------------------------------
class Request:
    """One client request and what the client was told."""

    __slots__ = ("acked_before", "code", "folded", "leak_checked", "multi_symbol", "n", "receipt", "status", "ticks")

    def __init__(self, n: int, ticks: list[Tick], acked_before: frozenset[str]) -> None:
        self.n = n
        self.ticks = ticks
        self.acked_before = acked_before
        """Keys acknowledged before it was sent: these must come back as duplicates."""
        self.status = "pending"  # pending | ok | failed
        self.code: str | None = None
        """The 503's error code, for a refused request."""
        self.receipt = None
        self.folded = False
        """Counted into the model already."""
        self.leak_checked = False
        self.multi_symbol = len({t.symbol for t in ticks}) > 1

    @property
    def keys(self) -> set[str]:
        return {t.key for t in self.ticks}


def recompute(ticks) -> dict[str, list[tuple]]:
    """symbol -> [(bucket, open, high, low, close, count, volume)] oldest first, from unique ticks."""
    out: dict[str, dict[int, list]] = {}
    for t in sorted(ticks, key=lambda t: t.ts):
        b = bucket_of(t.ts)
        c = out.setdefault(t.symbol, {}).get(b)
        if c is None:
            out[t.symbol][b] = [b, t.price, t.price, t.price, t.price, 1, t.volume]
        else:
            c[2] = max(c[2], t.price)
            c[3] = min(c[3], t.price)
            c[4] = t.price
            c[5] += 1
            c[6] += t.volume
    return {s: [tuple(bs[b]) for b in sorted(bs)] for s, bs in out.items()}


FRAME = re.compile(rb"(?:event: (\w+)\n)?(?:id: (\d+)\n)?data: ([^\n]*)\n\n")

STATS: Counter[str] = Counter()


class EngineMachine(RuleBasedStateMachine):
    """The engine under faults, with a model of what each client was told."""

    pg_url: str | None = None  # the Postgres variant sets this on a subclass

    def __init__(self) -> None:
        super().__init__()
        STATS["examples"] += 1
        DOOMED.clear()
        self.pg = self.pg_url is not None
        self.requests: list[Request] = []
        self.acked: set[str] = set()
        self.sse_last: int | None = None
        """The id of the last event the SSE client read (what it sends as Last-Event-ID)."""
        self.sse_resync = False
        """The client got ``event: resync`` and no event since: its next id may jump."""
        self.sse_connected = True
        self.ledger: dict[int, tuple] = {}
        """Every event the broadcaster published, by its SSE id."""
        self.ledger_order: list[tuple] = []
        self.applied: dict[str, list[Tick]] = {}
        """Per symbol, the ticks published so far (the state each next event's candle must reflect)."""
        self.checked_events = 0
        self.driver: TrioThread | None = None
        if self.pg:
            from candlewick.aio import open_aio_loop
            from candlewick.storage.postgres import PostgresStore

            self.clock = None
            self.config = make_config(ack_deadline=0.25, ingest_deadline=5.0, max_restarts=10**6, flush_max_ticks=8,
                                      sse_queue_capacity=16, sse_replay=24, database_url=self.pg_url, flush_lanes=2)
            self.store = FaultyStore(PostgresStore(self.pg_url))
            self.driver = TrioThread(loop_context=open_aio_loop)
        else:
            self.clock = trio.testing.MockClock()
            self.config = make_config(ack_deadline=2.0, ingest_deadline=1.0, max_restarts=10**6, flush_max_ticks=8,
                                      mailbox_capacity=4, sse_queue_capacity=16, sse_replay=24,
                                      retention_raw_seconds=1e12, retention_bar_seconds=1e12)
            self.store = FaultyStore(MemoryStore(raw_seconds=1e12, bar_seconds=1e12))
            self.driver = TrioThread(clock=self.clock)
        self.driver.call(self._start)

    # -- trio side -------------------------------------------------------------------------------
    async def _start(self) -> None:
        self.engine = Engine(self.config, self.store)
        await self.driver.nursery.start(self.engine.run)
        if self.pg:
            await self._sql("TRUNCATE ticks_raw, ohlc_1m, ohlc_rollups, symbols RESTART IDENTITY")
        hub = self.engine.hub
        publish = hub.publish

        def recording_publish(events) -> None:  # the flusher's list, passed on as it is
            first = hub.last_id + 1
            for i, ev in enumerate(events):
                self.ledger[first + i] = ev
                self.ledger_order.append(ev)
            publish(events)

        hub.publish = recording_publish
        self.sse_last = hub.last_id
        self.sub = hub.subscribe(None, self.sse_last)

    async def _sql(self, query: str):
        import asyncpg
        from trio_asyncio import aio_as_trio

        async def run():
            con = await asyncpg.connect(self.pg_url, timeout=10)
            try:
                return await con.fetch(query)
            finally:
                await con.close()

        return await aio_as_trio(run)()

    async def _settle(self) -> None:
        await trio.testing.wait_all_tasks_blocked()

    async def _submit(self, req: Request) -> None:
        try:
            req.receipt = await self.engine.submit(req.ticks)
            req.status = "ok"
        except Unavailable as exc:
            req.status, req.code = "failed", exc.code

    async def _ingest(self, req: Request) -> None:
        if self.pg:  # every request awaited: a real database cannot be frozen between steps
            with trio.fail_after(30):
                await self._submit(req)
        else:
            self.driver.nursery.start_soon(self._submit, req)
        await self._settle()

    async def _advance(self, seconds: float) -> None:
        self.clock.autojump_threshold = 0
        try:
            await trio.sleep(seconds)
            await self._settle()
        finally:
            self.clock.autojump_threshold = math.inf

    async def _snapshot(self) -> tuple[list[tuple], dict[str, list[tuple]]]:
        await self._settle()
        if self.pg:
            rows = [tuple(r) for r in await self._sql("SELECT symbol, price, ts, volume FROM ticks")]
        else:
            rows = []
            for sym in SYMBOLS:
                items, _ = await self.store.inner.ticks_page(sym, None, 10 * POOL)
                rows += [(r.symbol, r.price, r.ts, r.volume) for r in items]
        bars = {}
        for sym in SYMBOLS:
            got = await self.store.inner.bars_before(sym, math.inf, 1000)
            bars[sym] = [(b.bucket, b.open, b.high, b.low, b.close, b.count, b.volume) for b in reversed(got)]
        return rows, bars

    async def _sse_take(self) -> bytes:
        return self.sub.take() if self.sub is not None else b""

    async def _sse_drop(self) -> None:
        self.engine.hub.unsubscribe(self.sub)  # whatever it had not read yet is lost with the connection
        self.sub = None

    async def _sse_connect(self) -> None:
        self.sub = self.engine.hub.subscribe(None, self.sse_last)

    async def _crash(self, symbol: str) -> None:
        DOOMED[symbol] += 1

    async def _stop(self) -> None:
        self.engine.stop()
        with trio.fail_after(60):
            await self.engine.wait_stopped()

    # -- helpers -------------------------------------------------------------------------------------
    def _new_request(self, ticks: list[Tick]) -> Request:
        req = Request(len(self.requests), ticks, frozenset(self.acked))
        self.requests.append(req)
        STATS["requests"] += 1
        return req

    def _collect(self) -> None:
        """Fold finished requests into the model, checking each receipt."""
        for req in self.requests:
            if req.folded or req.status == "pending":
                continue
            req.folded = True
            if req.status == "ok":
                r = req.receipt
                STATS["acked"] += 1
                new = req.keys - req.acked_before
                assert r.skipped == 0, (req.n, r)
                assert r.accepted + r.duplicates == len(req.ticks), (req.n, r)
                assert r.accepted <= len(new), f"request {req.n} accepted {r.accepted} but had {len(new)} new keys"
                self.acked |= req.keys
            else:
                STATS[f"503 {req.code}"] += 1

    def _pending(self) -> list[Request]:
        return [r for r in self.requests if r.status == "pending"]

    def _unresolved(self) -> list[Request]:
        """Refused requests whose ticks are not all acknowledged since (the client still has to retry)."""
        return [r for r in self.requests if r.status == "failed" and not r.keys <= self.acked]

    def _read_sse(self) -> None:
        # imported here, where the SSE stream is read
        from candlewick.domain import event_json

        chunk = self.driver.call(self._sse_take)
        pos = 0
        for m in FRAME.finditer(chunk):
            assert m.start() == pos, f"unparsable SSE bytes: {chunk[pos:m.start()]!r}"
            pos = m.end()
            kind, eid, data = m.groups()
            if kind == b"resync":
                self.sse_resync = True
                STATS["sse resyncs"] += 1
                continue
            eid = int(eid)
            assert eid > self.sse_last, f"SSE id {eid} after {self.sse_last}: ids must strictly increase"
            assert eid == self.sse_last + 1 or self.sse_resync, f"SSE jumped from {self.sse_last} to {eid} without resync"
            sent = orjson.loads(data)
            sent.pop("committedAt", None)  # when the commit returned: not part of the event itself
            assert sent == orjson.loads(orjson.dumps(event_json(self.ledger[eid]))), \
                f"frame {eid} differs from the event published under that id"
            self.sse_last = eid
            STATS["sse events"] += 1
            self.sse_resync = False
        assert pos == len(chunk), f"unparsable SSE tail: {chunk[pos:]!r}"

    # -- rules -----------------------------------------------------------------------------------
    @rule(picks=st.lists(st.integers(0, POOL - 1), min_size=1, max_size=12))
    def ingest(self, picks) -> None:
        """A batch of ticks across symbols, out of trade-time order, maybe with repeats."""
        self.driver.call(self._ingest, self._new_request([TICKS[i] for i in picks]))

    @rule(symbol=st.sampled_from(SYMBOLS), picks=st.lists(st.integers(0, POOL // len(SYMBOLS) - 1), min_size=1,
                                                         max_size=8))
    def ingest_one_symbol(self, symbol, picks) -> None:
        """A batch of one symbol: refused means nothing of it was applied, strictly."""
        first = SYMBOLS.index(symbol)
        self.driver.call(self._ingest, self._new_request([TICKS[first + len(SYMBOLS) * i] for i in picks]))

    # These two draw a plain index rather than sampled_from(requests): which requests were refused
    # depends on timing (the Postgres machine runs on the real clock), and hypothesis requires the
    # same draws to mean the same choices when it replays an example (FlakyStrategyDefinition).
    @rule(pick=st.integers(0, 2**16))
    def replay_acknowledged(self, pick) -> None:
        """A client re-sends a request it already got 202 for: all duplicates."""
        done = [r for r in self.requests if r.status == "ok"]
        if done:
            old = done[pick % len(done)]
            self.driver.call(self._ingest, self._new_request(list(old.ticks)))

    @rule(pick=st.integers(0, 2**16))
    def retry_refused(self, pick) -> None:
        """A client retries a request that got 503."""
        refused = self._unresolved()
        if refused:
            old = refused[pick % len(refused)]
            self.driver.call(self._ingest, self._new_request(list(old.ticks)))

    @rule(symbol=st.sampled_from(SYMBOLS))
    def crash_actor(self, symbol) -> None:
        """The next apply in this symbol's actor raises (a bug inside one actor)."""
        STATS["crashes"] += 1
        self.driver.call(self._crash, symbol)

    @rule(after=st.integers(0, 3))
    def store_outage(self, after) -> None:
        """The store goes down, now or after a few more writes."""
        STATS["outages"] += 1
        self.store.fail_after(after)

    @rule()
    def store_back(self) -> None:
        self.store.up()
        self.driver.call(self._settle)

    @precondition(lambda self: not self.pg)
    @rule(seconds=st.sampled_from([0.05, 0.3, 1.0, 2.5, 11.0]))
    def advance(self, seconds) -> None:
        """Virtual time passes: flush retries back off, ack deadlines expire."""
        self.driver.call(self._advance, seconds)

    @rule()
    def flush(self) -> None:
        """With the store up, everything waiting is committed (or answered) within the ack deadline."""
        if self.store.down or self.store.writes_left is not None:
            self.driver.call(self._settle)
            return
        if not self.pg:
            self.driver.call(self._advance, self.config.ack_deadline + 1.0)
        self._collect()
        assert not self._pending(), f"{len(self._pending())} requests still waiting with the store up"

    @precondition(lambda self: self.sse_connected)
    @rule()
    def sse_read(self) -> None:
        self._read_sse()

    @precondition(lambda self: self.sse_connected)
    @rule()
    def sse_drop(self) -> None:
        """The SSE connection breaks; events queued for it and not yet read are lost with it."""
        self.driver.call(self._sse_drop)
        self.sse_connected = False

    @precondition(lambda self: not self.sse_connected)
    @rule()
    def sse_reconnect(self) -> None:
        """The SSE client comes back with Last-Event-ID: the id of the last event it read."""
        STATS["sse reconnects"] += 1
        self.driver.call(self._sse_connect)
        self.sse_connected = True
        self._read_sse()

    # -- invariants -------------------------------------------------------------------------------
    @invariant()
    def exactly_once(self) -> None:
        if self.driver is None:
            return
        rows, bars = self.driver.call(self._snapshot)
        self._collect()
        self._check(rows, bars, final=False)

    def _check(self, rows, bars, *, final: bool) -> None:
        # no tick stored twice, and each stored as it was sent
        stored: dict[str, Tick] = {}
        for sym, price, ts, volume in rows:
            t = BY_TS.get((sym, ts))
            assert t is not None, f"stored tick {sym}@{ts} was never sent"
            assert (price, volume) == (t.price, t.volume), f"stored tick {t.key} has other values"
            assert t.key not in stored, f"tick {t.key} stored twice"
            stored[t.key] = t
        persisted = set(stored)
        # acknowledged = persisted + in flight
        missing = self.acked - persisted
        assert not missing, f"acknowledged ticks not stored: {sorted(missing)}"
        in_flight = set().union(*(r.keys for r in self.requests if not r.folded))
        split = set().union(*(r.keys for r in self.requests if r.status == "failed" and r.multi_symbol))
        for r in self.requests:
            if r.status == "failed" and r.folded and not r.leak_checked:
                r.leak_checked = True
                if r.multi_symbol and (r.keys - self.acked - in_flight) & persisted:
                    STATS["refused multi-symbol requests with a part committed"] += 1
        extra = persisted - self.acked - in_flight - split
        if extra:
            culprits = [(r.n, r.code) for r in self.requests if r.keys & extra]
            raise AssertionError(f"stored ticks {sorted(extra)} were neither acknowledged nor in flight; "
                                 f"requests holding them: {culprits}")
        if final:
            assert persisted == self.acked, "after every retry, stored != acknowledged"
        accepted = sum(r.receipt.accepted for r in self.requests if r.folded and r.status == "ok")
        assert accepted <= len(persisted), f"receipts accepted {accepted} ticks but only {len(persisted)} are stored"
        if final and not any(r.status == "failed" and r.multi_symbol for r in self.requests):
            # nothing was committed without a 202 for it: each stored tick was accepted exactly once
            assert accepted == len(persisted), f"receipts accepted {accepted}, stored {len(persisted)}"
        # candles = recomputation from the unique stored ticks
        want = recompute(stored.values())
        for sym in SYMBOLS:
            got, exp = bars[sym], want.get(sym, [])
            assert [g[:6] for g in got] == [e[:6] for e in exp], f"{sym} candles differ from a recomputation"
            assert all(math.isclose(g[6], e[6]) for g, e in zip(got, exp, strict=True)), f"{sym} volumes differ"
        # every stored tick published exactly once, and each event's candle as recomputed at that point
        self._check_events()
        # events carry no key (SSE frames have none): a tick is known by its symbol and trade time
        published = [BY_TS[(ev[0].symbol, ev[0].ts)].key for ev in self.ledger_order]
        assert len(published) == len(set(published)), "a tick was published twice"
        assert set(published) == persisted, "published ticks differ from stored ticks"

    def _check_events(self) -> None:
        for ev in self.ledger_order[self.checked_events:]:
            tick, bucket, o, h, lo, c, v, sma = ev
            seen = self.applied.setdefault(tick.symbol, [])
            seen.append(tick)
            candles = recompute(seen)[tick.symbol]
            idx = [x[0] for x in candles].index(bucket)
            want = candles[idx]
            assert bucket == bucket_of(tick.ts)
            assert (o, h, lo, c) == want[1:5], f"event for {tick.key}: candle {(o, h, lo, c)} != {want[1:5]}"
            assert math.isclose(v, want[6]), f"event for {tick.key}: volume {v} != {want[6]}"
            if idx < SMA_N - 1:
                assert sma is None, f"event for {tick.key}: sma10 {sma} with only {idx + 1} candles"
            else:
                exp = sum(x[4] for x in candles[idx - SMA_N + 1:idx + 1]) / SMA_N
                assert sma is not None and math.isclose(sma, exp), f"event for {tick.key}: sma10 {sma} != {exp}"
            self.checked_events += 1

    def teardown(self) -> None:
        if self.driver is None:
            return
        try:
            if self.driver._thread.is_alive() and self.driver.error is None:
                self._finish()
        finally:
            self.driver.close()
            self.driver = None

    def _finish(self) -> None:
        """The store comes back and clients retry every refused request until 202: then stored
        equals acknowledged exactly, and the engine stops with nothing left behind."""
        self.store.up()
        DOOMED.clear()
        if not self.pg:
            self.driver.call(self._advance, self.config.ack_deadline + 1.0)
        self._collect()
        assert not self._pending()
        for _ in range(10):
            todo = self._unresolved()
            if not todo:
                break
            for old in todo:
                self.driver.call(self._ingest, self._new_request(list(old.ticks)))
            if self.pg:  # an actor whose rebuild failed retries it after a backoff of up to 2 s
                self.driver.call(trio.sleep, 0.3)  # client backoff before the next retry round
            else:
                self.driver.call(self._advance, self.config.ack_deadline + 1.0)
            self._collect()
        assert not self._unresolved(), "a retry with the store up and no crashes still failed"
        if not self.sse_connected:
            self.sse_reconnect()
        self._read_sse()
        rows, bars = self.driver.call(self._snapshot)
        self._check(rows, bars, final=True)
        STATS["final stored ticks"] += len(rows)
        self.driver.call(self._stop)


async def test_refused_multi_symbol_request_says_what_was_committed(nursery, autojump_clock):
    """A request spanning several symbols is committed in per-symbol writes, so a store failure
    can refuse it after one symbol's part is committed. The 503 must then say so (not "nothing of
    this request was applied"), keep its code and Retry-After, and the client's retry must end
    with every tick stored once: the committed ones reported as duplicates, the rest applied."""
    class GatedStore(FaultyStore):
        """B's actor loads its book only when the test opens the gate: A's part commits first."""

        gate = trio.Event()

        async def load_book(self, symbol, lateness):
            if symbol == "B":
                await self.gate.wait()
            return await super().load_book(symbol, lateness)

    store = GatedStore(MemoryStore())
    eng = await nursery.start(Engine(make_config(ack_deadline=2.0, flush_max_ticks=4), store).run)
    ticks = [t for t in TICKS if t.symbol in ("A", "B")][:10]  # 5 of A, 5 of B

    async def outage_once_a_is_stored() -> None:
        while not (await store.inner.ticks_page("A", None, 100))[0]:
            await trio.sleep(0.001)  # virtual time (autojump clock)
        store.fail_after(0)  # the store dies; B's actor then fails to load its book
        store.gate.set()

    nursery.start_soon(outage_once_a_is_stored)
    with pytest.raises(Unavailable) as refused:
        await eng.submit(ticks)
    assert refused.value.code == "STORE_UNAVAILABLE" and refused.value.retry_after == 2
    store.up()
    stored = {sym: len((await store.inner.ticks_page(sym, None, 100))[0]) for sym in ("A", "B")}
    assert sorted(stored.values()) == [0, 5], stored  # one symbol's part committed, the other not
    message = str(refused.value)
    assert "1 of its 2 symbols" in message and "nothing of this request was applied" not in message, message
    await trio.sleep(refused.value.retry_after)  # the client honours Retry-After (virtual time)
    receipt = await eng.submit(ticks)  # its retry
    assert (receipt.accepted, receipt.duplicates) == (5, 5)
    stored = {sym: len((await store.inner.ticks_page(sym, None, 100))[0]) for sym in ("A", "B")}
    assert stored == {"A": 5, "B": 5}
    eng.stop()


def _run(machine, *, examples: int, steps: int, derandomize: bool):
    STATS.clear()
    hypothesis.register_random(trio._core._run._r)  # trio's scheduling choices replay with the example
    started = time.monotonic()
    with mock.patch.object(BookTable, "apply", _apply_or_crash):
        run_state_machine_as_test(machine, settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None, derandomize=derandomize,
            database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    return time.monotonic() - started, dict(STATS)


def test_engine_state_machine_memory_store(size, figure):
    """Ingest, crashes, outages, flushes and SSE reconnects in any order never lose, double or
    mis-aggregate a tick, and SSE ids strictly increase (memory store, virtual time)."""
    examples = size.pick(quick=300, full=3000)
    elapsed, stats = _run(EngineMachine, examples=examples, steps=size.pick(quick=40, full=80),
                          derandomize=not size.full)
    assert stats["examples"] >= examples
    figure(f"{stats['examples']} examples ({stats['requests']} requests, {stats['crashes']} actor crashes, "
           f"{stats['outages']} store outages, {stats['sse reconnects']} SSE reconnects, "
           f"{sum(v for k, v in stats.items() if k.startswith('503'))} refusals): 0 invariant violations "
           f"in {elapsed:.0f} s", value=0, elapsed_s=round(elapsed, 1), **stats)


def test_engine_state_machine_postgres(size, figure, pg_url):
    """The same machine on the real Postgres store (real clock, every request awaited)."""
    machine = type("PostgresEngineMachine", (EngineMachine,), {"pg_url": pg_url})
    examples = size.pick(quick=20, full=400)
    elapsed, stats = _run(machine, examples=examples, steps=size.pick(quick=20, full=50),
                          derandomize=not size.full)
    assert stats["examples"] >= examples
    figure(f"Postgres: {stats['examples']} examples ({stats['requests']} requests, {stats['crashes']} actor "
           f"crashes, {stats['outages']} store outages, {stats['sse reconnects']} SSE reconnects): "
           f"0 invariant violations in {elapsed:.0f} s", value=0, elapsed_s=round(elapsed, 1), **stats)


pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
