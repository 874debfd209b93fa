"""Server-Sent Events end to end: ids, keep-alive, Last-Event-ID replay, resync of a stalled subscriber;
and the broadcaster's batching underneath (shared bytes, bounds counted in events, filters in id order,
commit times across the Redis bus, writes that yield to ingest)."""

from __future__ import annotations

import re
import socket
import time

import orjson
import trio

from candlewick.domain import Committed, Event, event_rows
from candlewick.http import _sse
from candlewick.runtime import Broadcaster
from candlewick.runtime._egress import Egress
from candlewick.schema import Tick
from tests.conftest import start_live_server

M0 = (int(time.time()) // 60 - 20) * 60


def item(symbol, price, ts, key):
    return {"symbol": symbol, "price": price, "ts": ts, "volume": 1.0, "idempotencyKey": key}


class SSEReader:
    """A minimal SSE parser over an httpx streaming response."""

    def __init__(self, response):
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next_event(self) -> dict:
        event: dict = {}
        async for line in self.lines:
            if line == "":
                if event:
                    return event
                continue
            if line.startswith(":"):
                self.comments.append(line)
                event.setdefault("comment", []).append(line)
                continue
            field, _, value = line.partition(":")
            event[field] = value[1:] if value.startswith(" ") else value
        raise EOFError


async def open_stream(live, path="/realtime/ticks", headers=None):
    req = live.client.build_request("GET", live.url(path), headers=headers or {})
    response = await live.client.send(req, stream=True)
    return response, SSEReader(response)


async def test_stream_headers_hello_ids_and_payload(server):
    """The stream starts with retry + hello, then one event per applied tick with increasing ids."""
    response, reader = await open_stream(server, "/realtime/ticks?symbol=AAA")
    try:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache, no-transform"
        assert response.headers["x-accel-buffering"] == "no"
        hello = await reader.next_event()
        assert hello["retry"] == "3000"
        data = orjson.loads(hello["data"])
        assert data["ok"] is True and data["filterSymbol"] == "AAA" and data["connectedAt"] > 1e12
        await server.post_ticks([item("AAA", 10, M0, "a1"), item("BBB", 5, M0, "b1"), item("AAA", 12, M0 + 1, "a2")])
        await server.post_ticks([item("AAA", 10, M0, "a1")])  # a duplicate: no event
        await server.post_ticks([item("AAA", 9, M0 + 2, "a3")])
        events = [await reader.next_event() for _ in range(3)]
        ids = [int(e["id"]) for e in events]
        assert ids == sorted(ids) and len(set(ids)) == 3
        payloads = [orjson.loads(e["data"]) for e in events]
        assert [p["price"] for p in payloads] == [10, 12, 9]
        last = payloads[-1]
        assert last["kind"] == "tick" and last["symbol"] == "AAA" and last["ts"] == M0 + 2
        assert last["candle1m"] == {"bucket_start": M0, "ts": M0, "open": 10, "high": 12, "low": 9, "close": 9,
                                    "volume": 3.0}
        assert last["sma10"] is None
    finally:
        await response.aclose()


async def test_keepalive_comment_when_idle(nursery):
    """An idle stream carries ': keep-alive' comments at the configured interval."""
    live = await start_live_server(nursery, sse_keepalive=0.2)
    response, reader = await open_stream(live)
    try:
        await reader.next_event()
        with trio.fail_after(5):
            ev = await reader.next_event()
        assert ev.get("comment") == [": keep-alive"]
    finally:
        await response.aclose()
        await live.client.aclose()
        live.running.stop()


async def test_last_event_id_replays_missed_events(server):
    """Reconnecting with Last-Event-ID replays exactly the events after it, without resync."""
    response, reader = await open_stream(server)
    await reader.next_event()
    await server.post_ticks([item("R", 1 + i, M0 + i, f"r{i}") for i in range(3)])
    first = [await reader.next_event() for _ in range(3)]
    await response.aclose()
    await server.post_ticks([item("R", 10 + i, M0 + 10 + i, f"s{i}") for i in range(4)])
    response, reader = await open_stream(server, headers={"Last-Event-ID": first[1]["id"]})
    try:
        await reader.next_event()  # hello
        replayed = [await reader.next_event() for _ in range(5)]
        assert all("event" not in e for e in replayed)
        assert [orjson.loads(e["data"])["price"] for e in replayed] == [3, 10, 11, 12, 13]
        assert replayed[0]["id"] == first[2]["id"]
    finally:
        await response.aclose()


async def test_last_event_id_too_old_gets_resync_first(nursery):
    """If some missed events are gone from the replay buffer, the stream starts with event: resync."""
    live = await start_live_server(nursery, sse_replay=5)
    try:
        await live.post_ticks([item("Q", 1 + i, M0 + i, f"q{i}") for i in range(20)])
        old = live.engine.hub.last_id - 15
        response, reader = await open_stream(live, headers={"Last-Event-ID": str(old)})
        await reader.next_event()
        ev = await reader.next_event()
        assert ev["event"] == "resync"
        rest = [orjson.loads((await reader.next_event())["data"])["price"] for _ in range(5)]
        assert rest == [16, 17, 18, 19, 20]
        await response.aclose()
    finally:
        await live.client.aclose()
        live.running.stop()


async def test_subscriber_that_never_reads_is_resynced_and_does_not_slow_ingest(nursery):
    """A subscriber that stops reading gets its backlog dropped and a resync; ingest is unaffected."""
    live = await start_live_server(nursery, sse_queue_capacity=16)
    try:
        host, port = live.base_url.removeprefix("http://").split(":")
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect((host, int(port)))
        stream = trio.SocketStream(sock)
        await stream.send_all(f"GET /realtime/ticks HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        with trio.fail_after(5):
            while live.engine.hub.subscribers() == 0:
                await trio.sleep(0.01)
        started = time.perf_counter()
        for batch in range(20):  # 4,000 events, far beyond what the socket buffers hold
            r = await live.post_ticks([item("FLOOD", 1 + i, M0 + i / 1000, f"f{batch}-{i}") for i in range(200)])
            assert r.status_code == 202
        elapsed = time.perf_counter() - started
        stats = live.engine.hub.statistics()
        assert stats.events_dropped > 0
        assert elapsed < 10
        received = b""
        with trio.move_on_after(2):
            while b"event: resync" not in received:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                received += chunk
        assert b"event: resync" in received
        await stream.aclose()
    finally:
        await live.client.aclose()
        live.running.stop()


async def test_shutdown_ends_streams(nursery):
    """Stopping the server ends open SSE streams instead of hanging the drain."""
    live = await start_live_server(nursery)
    response, reader = await open_stream(live)
    await reader.next_event()
    live.running.stop()
    with trio.fail_after(2):
        try:
            while True:
                await reader.next_event()
        except EOFError:
            pass
    await response.aclose()
    await live.client.aclose()  # as an EventSource does when its stream ends
    with trio.fail_after(3):
        await live.engine.wait_stopped()


async def test_v1_alias_with_symbols_filter(server):
    """/api/v1/realtime/ticks?symbols=A,B streams exactly those symbols' ticks."""
    response, reader = await open_stream(server, "/api/v1/realtime/ticks?symbols=AA,BB")
    try:
        hello = orjson.loads((await reader.next_event())["data"])
        assert hello["filterSymbol"] is None
        await server.post_ticks([item("AA", 1, M0, "f1"), item("CC", 2, M0, "f2"), item("BB", 3, M0, "f3")])
        got = [orjson.loads((await reader.next_event())["data"])["symbol"] for _ in range(2)]
        assert sorted(got) == ["AA", "BB"]  # order holds per symbol, not across symbols
        await server.post_ticks([item("CC", 4, M0, "f4"), item("AA", 5, M0, "f5")])
        nxt = orjson.loads((await reader.next_event())["data"])
        assert (nxt["symbol"], nxt["price"]) == ("AA", 5)  # CC never arrives
    finally:
        await response.aclose()


async def test_events_carry_their_commit_time_live_and_replayed(server):
    """Each event carries committedAt: epoch seconds when the flusher's commit returned, the same
    for every event of one commit, and the same again when it is replayed."""
    response, reader = await open_stream(server)
    try:
        await reader.next_event()
        before = time.time()
        await server.post_ticks([item("CT", 1 + i, M0 + i, f"ct{i}") for i in range(3)])
        after = time.time()
        live = [await reader.next_event() for _ in range(3)]
    finally:
        await response.aclose()
    stamps = {orjson.loads(e["data"])["committedAt"] for e in live}
    assert len(stamps) == 1 and before <= stamps.pop() <= after
    response, reader = await open_stream(server, headers={"Last-Event-ID": str(int(live[0]["id"]) - 1)})
    try:
        await reader.next_event()
        replayed = [await reader.next_event() for _ in range(3)]
    finally:
        await response.aclose()
    assert [(e["id"], e["data"]) for e in replayed] == [(e["id"], e["data"]) for e in live]


def tick(symbol: str, price: float, ts: float) -> Tick:
    return Tick(f"{symbol}:{ts}:{price}", symbol, price, ts, 1.0)


def batch(*ticks: Tick, at: float | None = 1.5e9) -> Committed:
    """Committed events as the flusher sends them (candle fields do not matter here)."""
    return Committed([Event(t, 60 * int(t.ts // 60), t.price, t.price, t.price, t.price, 1.0, None) for t in ticks], at)


FRAME = re.compile(rb"(?:event: (\w+)\n)?(?:id: (\d+)\n)?data: ([^\n]*)\n\n")


def frames(chunk: bytes) -> list[tuple[str, str, dict]]:
    """(kind, id, data) of each SSE frame of a write; the write is nothing but frames."""
    found = list(FRAME.finditer(chunk))
    assert sum(len(m[0]) for m in found) == len(chunk), chunk
    return [((m[1] or b"message").decode(), (m[2] or b"").decode(), orjson.loads(m[3])) for m in found]


async def test_one_serialisation_shared_by_every_subscriber():
    """A batch is one shared bytes object for every subscriber without a filter: frames are made
    once, not once per subscriber."""
    hub = Broadcaster(None)
    subs = [hub.subscribe(None, None) for _ in range(50)]
    hub.publish(batch(tick("A", 1, M0), tick("B", 2, M0), tick("A", 3, M0 + 1)))
    chunks = [s.take() for s in subs]
    assert all(c is chunks[0] for c in chunks)
    got = frames(chunks[0])
    assert [f[2]["price"] for f in got] == [1, 2, 3] and all(f[2]["committedAt"] == 1.5e9 for f in got)
    assert [int(f[1]) for f in got] == list(range(hub.last_id - 2, hub.last_id + 1))
    assert hub.statistics().events_sent == 150


async def test_filtered_subscribers_get_their_symbols_in_id_order():
    """A filter's share of a batch is in id order, even when the batch interleaves its symbols."""
    hub = Broadcaster(None)
    ab = hub.subscribe(frozenset({"A", "B"}), None)
    ab2 = hub.subscribe(frozenset({"B", "A"}), None)
    a = hub.subscribe(frozenset({"A"}), None)
    c = hub.subscribe(frozenset({"C"}), None)
    hub.publish(batch(tick("B", 1, M0), tick("A", 2, M0), tick("C", 3, M0), tick("B", 4, M0), tick("A", 5, M0)))
    first = hub.last_id - 4
    chunk = ab.take()
    got = frames(chunk)
    assert [(f[2]["symbol"], int(f[1]) - first) for f in got] == [("B", 0), ("A", 1), ("B", 3), ("A", 4)]
    assert ab2.take() is chunk  # one share per filter, whatever the order it was given in
    assert [int(f[1]) - first for f in frames(a.take())] == [1, 4]
    assert [int(f[1]) - first for f in frames(c.take())] == [2]
    assert hub.statistics().events_sent == 4 + 4 + 2 + 1


async def test_bound_counts_events_and_keeps_the_newest_after_resync():
    """Past its bound (in events, however they were batched), a subscriber's backlog is dropped:
    resync first, then at most the bound of the newest events, consecutive; with or without a
    filter; a batch bigger than the bound alone keeps its newest."""
    hub = Broadcaster(None, queue_capacity=8)
    everyone, only_a = hub.subscribe(None, None), hub.subscribe(frozenset({"A"}), None)
    for i in range(5):  # 15 events in 5 batches
        hub.publish(batch(*(tick("A", 1 + 3 * i + j, M0 + 3 * i + j) for j in range(3))))
    assert hub.statistics().events_dropped == 7 + 7
    for sub in (everyone, only_a):
        got = frames(sub.take())
        assert got[0][0] == "resync" and got[0][2] == {"reason": "overflow"}
        ids = [int(f[1]) for f in got[1:]]
        assert ids == list(range(hub.last_id - 7, hub.last_id + 1))
        assert sub.take() == b""
    hub.publish(batch(*(tick("A", 100 + j, M0 + j) for j in range(20))))  # one batch of 20 > bound 8
    for sub in (everyone, only_a):
        got = frames(sub.take())
        assert got[0][0] == "resync" and [int(f[1]) for f in got[1:]] == list(range(hub.last_id - 7, hub.last_id + 1))
    assert everyone.dropped == only_a.dropped == 7 + 12


async def test_bus_rows_carry_the_commit_time():
    """Over the Redis bus each row carries its commit time (rows of 11 fields, from before, still read)."""
    hub = Broadcaster(None)
    hub.last_id = 99
    sub = hub.subscribe(None, None)
    rows = event_rows(batch(tick("A", 1, M0), at=1.7e9)) + event_rows(batch(tick("B", 2, M0), at=1.8e9))
    hub.publish_encoded(100, orjson.dumps(rows))
    hub.publish_encoded(102, orjson.dumps([list(rows[0])[:11]]))  # a publisher from before committedAt
    got = frames(sub.take())
    assert [(f[1], f[2]["symbol"], f[2].get("committedAt")) for f in got] == [
        ("100", "A", 1.7e9), ("101", "B", 1.8e9), ("102", "A", None)]
    hub.publish_encoded(101, orjson.dumps(rows[1:]))  # a repeat across a reconnect: nothing new
    assert sub.take() == b""


async def test_writer_coalesces_within_its_window(nursery):
    """With a coalescing window, events arriving within it after a write share the next write."""
    hub = Broadcaster(None)
    await nursery.start(hub.run)
    agen = _sse.stream(hub, None, None, 60.0, None, coalesce=0.3)
    try:
        assert b'"ok":true' in await agen.__anext__()
        started = trio.current_time()
        for i in range(3):  # three commits, three batches
            hub.publish(batch(tick("W", 1 + i, M0 + i)))
        chunk = await agen.__anext__()
        assert trio.current_time() - started >= 0.25  # the window counts from the hello
        assert [f[2]["price"] for f in frames(chunk)] == [1, 2, 3]
    finally:
        await agen.aclose()
    assert hub.subscribers() == 0


async def test_writes_wait_while_the_server_is_busy(nursery):
    """A writer gets its turn when nothing else is runnable (ingest first), or, on a server that
    never idles, within max_wait."""
    hub = Broadcaster(None)
    sub = hub.subscribe(None, None)
    done = trio.Event()

    async def busy(seconds: float) -> None:
        end = trio.current_time() + seconds
        while trio.current_time() < end:
            await trio.lowlevel.checkpoint()  # always runnable: the loop never idles
        done.set()

    for max_wait, expect_busy_done in ((10.0, True), (0.1, False)):
        egress = Egress(max_wait=max_wait)
        await nursery.start(egress.run)
        done = trio.Event()
        async with trio.open_nursery() as busy_nursery:
            busy_nursery.start_soon(busy, 0.5)
            await trio.lowlevel.checkpoint()
            started = trio.current_time()
            await egress.turn(sub)
            waited = trio.current_time() - started
            assert done.is_set() is expect_busy_done, (max_wait, waited)
        assert waited < 0.45 if not expect_busy_done else waited >= 0.4
    hub.unsubscribe(sub)


async def test_a_loop_busy_with_ready_io_is_not_idle():
    """Idle means nothing runnable and no I/O ready (as trio's wait_all_tasks_blocked has it): a
    task that keeps finding data already waiting on its socket keeps the writers waiting, though
    whenever it parks nothing is runnable."""
    a, b = trio.socket.socketpair()
    rounds = 300
    done = 0

    async def reader() -> None:
        nonlocal done
        for _ in range(rounds):
            await b.send(b"x")
            await trio.lowlevel.wait_readable(a)  # parks with nothing runnable; the byte is already there
            await a.recv(1)
            done += 1

    egress = Egress()
    with a, b:
        async with trio.open_nursery() as busy_nursery:
            busy_nursery.start_soon(reader)
            await trio.lowlevel.checkpoint()
            await egress.wait_idle()
            assert done == rounds, f"declared idle after {done} of {rounds} rounds of ready I/O"


async def test_dropped_events_stay_counted_after_the_subscriber_leaves():
    """events_dropped is a counter (candlewick_sse_events_total{outcome="dropped"}): a subscriber that
    overflowed and then disconnected still counts, so the figure never goes down."""
    hub = Broadcaster(None, queue_capacity=4)
    sub = hub.subscribe(None, None)
    hub.publish(batch(*(tick("A", 1 + i, M0 + i) for i in range(10))))
    before = hub.statistics().events_dropped
    assert before == 6
    hub.unsubscribe(sub)
    hub.unsubscribe(sub)  # a second call (e.g. a writer's finally after close) counts nothing twice
    assert hub.statistics().events_dropped == before
