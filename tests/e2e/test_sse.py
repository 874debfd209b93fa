"""Server-Sent Events end to end: ids, keep-alive, Last-Event-ID replay, resync of a stalled subscriber."""

from __future__ import annotations

import socket
import time

import orjson
import trio

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
        assert stats["events_dropped"] > 0
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
