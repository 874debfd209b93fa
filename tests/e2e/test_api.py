"""Every endpoint of docs/API.md against the real server (hypercorn + quart-trio) on a loopback port."""

from __future__ import annotations

import time

import httpx
import jsonschema
import pytest
import trio

from candlewick.http._openapi import document
from tests.conftest import API_KEY, start_live_server

NOW = int(time.time())
M0 = (NOW // 60 - 30) * 60  # a minute boundary half an hour ago


def item(symbol, price, ts, volume=1.0, key=None):
    out = {"symbol": symbol, "price": price, "ts": ts, "volume": volume}
    if key is not None:
        out["idempotencyKey"] = key
    return out


def conforms(response: httpx.Response, path: str, method: str = "get") -> None:
    """The response body matches the OpenAPI document's schema for its status."""
    doc = document()
    op = doc["paths"][path][method]
    spec = op["responses"][str(response.status_code)]
    schema = spec["content"]["application/json"]["schema"]
    resolver_doc = {"components": doc["components"], **schema}
    jsonschema.validate(response.json(), resolver_doc)


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    return body


async def test_post_ticks_then_read_everything(server):
    """A posted batch is acknowledged with counts and visible through latest, history, candles, metrics."""
    items = [item("BTCUSDT", 100 + i, M0 + 10 * i, 0.5, key=f"k{i}") for i in range(30)]  # 5 minutes
    r = await server.post_ticks(items)
    assert r.status_code == 202 and r.json() == {"accepted": 30, "duplicates": 0, "queued": 30, "rejected": 0,
                                                 "skipped": 0}
    conforms(r, "/api/v1/webhooks/ticks", "post")
    c = server.client
    latest = await c.get(server.url("/api/v1/ticks/BTCUSDT"))
    assert latest.json() == {"symbol": "BTCUSDT", "price": 129.0, "ts": M0 + 290, "volume": 0.5}
    conforms(latest, "/api/v1/ticks/{symbol}")
    hist = await c.get(server.url("/api/v1/ticks/BTCUSDT/history"), params={"limit": 4})
    assert [t["price"] for t in hist.json()["items"]] == [129.0, 128.0, 127.0, 126.0]
    conforms(hist, "/api/v1/ticks/{symbol}/history")
    candles = await c.get(server.url("/api/v1/ticks/BTCUSDT/history"), params={"view": "ohlc1m"})
    body = candles.json()
    conforms(candles, "/api/v1/ticks/{symbol}/history")
    assert [x["ts"] for x in body["items"]] == [M0 + 60 * m for m in range(5)]
    first = body["items"][0]
    assert (first["open"], first["high"], first["low"], first["close"], first["count"]) == (100, 105, 100, 105, 6)
    assert first["volume"] == 3.0 and first["vwap"] == pytest.approx(102.5)
    assert body["nextCursor"] is None
    for alias in ({"agg": "1m"}, {"shape": "candle"}):
        again = await c.get(server.url("/api/v1/ticks/BTCUSDT/history"), params=alias)
        assert again.json() == body
    metrics = await c.get(server.url("/api/v1/metrics/BTCUSDT"))
    m = metrics.json()
    conforms(metrics, "/api/v1/metrics/{symbol}")
    assert (m["windowStart"], m["windowEnd"], m["count"], m["min"], m["max"], m["last"]) == \
        (M0 + 240, M0 + 300, 6, 124, 129, 129)
    assert m["avg"] == pytest.approx(126.5) and m["vwap"] == pytest.approx(126.5) and m["volume"] == 3.0


async def test_retry_is_duplicate_not_double_counted(server):
    """The same batch posted again is all duplicates; candles do not change."""
    items = [item("ETH", 10 + i, M0 + i) for i in range(5)]  # default keys
    assert (await server.post_ticks(items)).json()["accepted"] == 5
    for _ in range(3):
        assert (await server.post_ticks(items)).json()["duplicates"] == 5
    candles = (await server.client.get(server.url("/api/v1/ticks/ETH/history?view=ohlc1m"))).json()
    assert candles["items"][0]["count"] == 5


async def test_distinct_trades_in_one_second_are_not_merged(server):
    """Two different trades in the same second (no keys) both count: the old default key merged them."""
    r = await server.post_ticks([item("SOL", 10, M0), item("SOL", 11, M0)])
    assert r.json()["accepted"] == 2


async def test_candle_paging_and_sma_exact_at_boundaries(server):
    """Walking candles by nextCursor gives every candle once, with SMA10 equal to a full recomputation."""
    closes = [100 + (i * 7) % 13 for i in range(25)]
    await server.post_ticks([item("PAGE", c, M0 - 60 * 25 + 60 * i + 5, key=f"p{i}") for i, c in enumerate(closes)])
    items, before = [], None
    while True:
        params = {"view": "ohlc1m", "limit": 7, **({"before": before} if before else {})}
        page = (await server.client.get(server.url("/api/v1/ticks/PAGE/history"), params=params)).json()
        items[:0] = page["items"]
        before = page["nextCursor"]
        if before is None:
            break
    assert [x["close"] for x in items] == closes
    expected = [None if i < 9 else sum(closes[i - 9:i + 1]) / 10 for i in range(25)]
    assert [x["sma10"] for x in items] == pytest.approx(expected)


async def test_rollup_intervals(server):
    """interval=5m rolls minutes up: open of the first, close of the last, summed counts."""
    await server.post_ticks([item("ROLL", 100 + i, M0 + 30 * i, key=f"r{i}") for i in range(20)])  # 10 minutes
    r = await server.client.get(server.url("/api/v1/ticks/ROLL/history"), params={"view": "ohlc1m", "interval": "5m"})
    got = r.json()["items"]
    assert [x["ts"] % 300 for x in got] == [0] * len(got)
    assert sum(x["count"] for x in got) == 20
    assert got[0]["open"] == 100 and got[-1]["close"] == 119
    bad = await server.client.get(server.url("/api/v1/ticks/ROLL/history"), params={"interval": "7m"})
    assert_error(bad, 400, "VALIDATION_ERROR")


async def test_raw_cursor_walk_over_shared_second(server):
    """Paging raw ticks by nextCursor returns all ticks even when many share the boundary second."""
    await server.post_ticks([item("WALK", 1 + i, M0 + i // 10, key=f"w{i}") for i in range(55)])
    seen, cursor = [], None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = (await server.client.get(server.url("/api/v1/ticks/WALK/history"), params=params)).json()
        seen += [t["price"] for t in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen) == [1.0 + i for i in range(55)]


async def test_symbols_upsert_and_list(server):
    """Symbols are upserted, listed sorted, filtered by active; tick-only symbols appear with empty fields."""
    r = await server.client.post(server.url("/api/v1/webhooks/symbols"), headers={"x-api-key": API_KEY},
                                 json={"items": [{"symbol": "ZED", "base": "Z", "quote": "USD", "active": False},
                                                 {"symbol": "AAA", "base": "A", "quote": "USD"}]})
    assert r.status_code == 202 and r.json() == {"upserted": 2, "skipped": 0}
    await server.post_ticks([item("MMM", 1, M0)])
    active = (await server.client.get(server.url("/api/v1/symbols"))).json()
    assert active == [{"symbol": "AAA", "base": "A", "quote": "USD", "active": True},
                      {"symbol": "MMM", "base": "", "quote": "", "active": True}]
    every = (await server.client.get(server.url("/api/v1/symbols?active=false"))).json()
    assert [s["symbol"] for s in every] == ["AAA", "MMM", "ZED"]


async def test_symbols_pages_follow_link(server):
    """limit pages the symbols; each page but the last links to the next (after its last symbol), and
    following the links lists every symbol once, in order. A bad limit or after is 400."""
    names = ["A/B", "A:C", "AB", "B", "ZZ"]
    await server.post_ticks([item(name, 1, M0) for name in names])
    seen, path, pages = [], "/api/v1/symbols?active=false&limit=2", 0
    while path is not None:
        r = await server.client.get(server.url(path))
        assert r.status_code == 200
        conforms(r, "/api/v1/symbols")
        page = [s["symbol"] for s in r.json()]
        assert 0 < len(page) <= 2
        seen += page
        pages += 1
        link = r.headers.get("link")
        if link is not None:
            assert link.startswith("</api/v1/symbols?active=false&limit=2&after=") and link.endswith('>; rel="next"')
        path = None if link is None else link[1:link.index(">")]
    assert (seen, pages) == (sorted(names), 3)
    assert [s["symbol"] for s in (await server.client.get(server.url("/api/v1/symbols?after=AB"))).json()] == ["B", "ZZ"]
    for query in ("limit=0", "limit=10001", "limit=x", "after=", "after=a%20b"):
        body = assert_error(await server.client.get(server.url(f"/api/v1/symbols?{query}")), 400, "VALIDATION_ERROR")
        assert body["error"]["details"][0]["path"] == "query." + query.split("=")[0]


async def test_metrics_window_extension(server):
    """window=N aggregates the trades of the last N seconds."""
    now = time.time()
    await server.post_ticks([item("WIN", 10, now - 100, 1), item("WIN", 20, now - 5, 1), item("WIN", 30, now - 1, 3)])
    m = (await server.client.get(server.url("/api/v1/metrics/WIN?window=30"))).json()
    assert (m["count"], m["min"], m["max"], m["last"]) == (2, 20, 30, 30)
    assert m["avg"] == 25 and m["vwap"] == pytest.approx(27.5)


async def test_metrics_open_is_the_windows_first_trade(server):
    """Metrics carry the old API's open: the window's earliest trade by ts, null when the window has none."""
    now = time.time()
    # applied out of order: the earliest trade by ts comes second
    await server.post_ticks([item("OPEN", 12, M0 + 30), item("OPEN", 10, M0 + 5), item("OPEN", 14, M0 + 50)])
    await server.post_ticks([item("OPENW", 22, now - 20), item("OPENW", 20, now - 30), item("OPENW", 21, now - 10)])
    c = server.client
    latest = await c.get(server.url("/api/v1/metrics/OPEN"))
    conforms(latest, "/api/v1/metrics/{symbol}")
    assert (latest.json()["windowStart"], latest.json()["open"], latest.json()["last"]) == (M0, 10, 14)
    window = await c.get(server.url("/api/v1/metrics/OPENW?window=60"))
    conforms(window, "/api/v1/metrics/{symbol}")
    assert (window.json()["count"], window.json()["open"], window.json()["last"]) == (3, 20, 21)
    empty = await c.get(server.url("/api/v1/metrics/OPENW?window=1"))
    conforms(empty, "/api/v1/metrics/{symbol}")
    assert empty.json()["count"] == 0 and empty.json()["open"] is None


async def test_out_of_range_integer_limits_are_clamped(server):
    """An integer limit out of range is clamped to 1-2000 (raw pages hold at most 1000), as the old API did;
    a limit that is not an integer is still 400."""
    await server.post_ticks([item("LIM", 1 + i % 50, M0 + i * 0.1, key=f"l{i}") for i in range(1500)])
    c, path = server.client, "/api/v1/ticks/LIM/history"
    for limit, raw_items, candles in (("0", 1, 1), ("-7", 1, 1), ("5000", 1000, 3), (str(10**30), 1000, 3),
                                      ("-" + "9" * 40, 1, 1), ("2000", 1000, 3), ("3", 3, 3),
                                      ("0" * 5000 + "5", 5, 3), ("0" * 5000, 1, 1)):  # past int()'s 4300 digits
        raw = await c.get(server.url(path), params={"limit": limit})
        assert raw.status_code == 200, (limit, raw.text)
        conforms(raw, "/api/v1/ticks/{symbol}/history")
        assert len(raw.json()["items"]) == raw_items, limit
        assert raw.json()["nextCursor"] is not None
        bars = await c.get(server.url(path), params={"limit": limit, "view": "ohlc1m"})
        assert bars.status_code == 200, (limit, bars.text)
        assert len(bars.json()["items"]) == candles, limit  # 1500 ticks over 150 s: 3 minutes
    for limit in ("abc", "1.5", "+5", " 5", "5_0", "", "\u0665"):
        for params in ({"limit": limit}, {"limit": limit, "view": "ohlc1m"}):
            body = assert_error(await c.get(server.url(path), params=params), 400, "VALIDATION_ERROR")
            assert body["error"]["details"] == [{"path": "query.limit", "message": "must be an integer from 1 to 2000"}]


async def test_slash_symbols_route(server):
    """Symbols may contain '/', in the path raw or percent-encoded."""
    await server.post_ticks([item("BTC/USD", 5, M0)])
    assert (await server.client.get(server.url("/api/v1/ticks/BTC/USD"))).json()["symbol"] == "BTC/USD"
    assert (await server.client.get(server.url("/api/v1/ticks/BTC%2FUSD/history"))).json()["items"][0]["price"] == 5


async def test_auth_missing_and_wrong_key_identical_401(server):
    """Missing and wrong keys get the same 401 body on every write path, and nothing is applied."""
    bodies = set()
    for path, payload in (("/api/v1/webhooks/ticks", {"source": "s", "items": [item("NOAUTH", 1, M0)]}),
                          ("/api/v1/webhooks/symbols", {"items": [{"symbol": "NOAUTH"}]})):
        for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": API_KEY + "x"}, {"x-api-key": ""}):
            r = await server.client.post(server.url(path), json=payload, headers=headers)
            assert_error(r, 401, "AUTH_REQUIRED")
            bodies.add(r.content)
    assert len(bodies) == 1
    assert (await server.client.get(server.url("/api/v1/symbols?active=false"))).json() == []


async def test_bad_input_gets_json_errors_and_changes_nothing(server):
    """Malformed JSON, invalid items, oversize bodies and unknown routes answer JSON errors; nothing applies."""
    c, url = server.client, server.url("/api/v1/webhooks/ticks")
    hdr = {"x-api-key": API_KEY, "content-type": "application/json"}
    assert_error(await c.post(url, content=b"{nope", headers=hdr), 400, "MALFORMED_JSON")
    r = await server.post_ticks([item("BAD", 1, M0), item("BAD", -1, M0), item("BAD", 1, M0 * 1000)])
    body = assert_error(r, 400, "VALIDATION_ERROR")
    assert [d["path"] for d in body["error"]["details"]] == ["$.items[1].price", "$.items[2].ts"]
    assert "milliseconds" in body["error"]["details"][1]["message"]
    assert_error(await server.post_ticks([]), 400, "VALIDATION_ERROR")
    assert_error(await server.post_ticks([item("bad symbol!", 1, M0)]), 400, "VALIDATION_ERROR")
    big = b'{"source":"s","items":[' + b" " * (4 * 1024 * 1024) + b"]}"
    assert_error(await c.post(url, content=big, headers=hdr), 413, "PAYLOAD_TOO_LARGE")
    assert_error(await c.get(server.url("/api/v1/nope")), 404, "NOT_FOUND")
    assert_error(await c.get(server.url("/api/v1/ticks/BAD")), 404, "NOT_FOUND")
    assert_error(await c.get(server.url("/api/v1/metrics/BAD")), 404, "NOT_FOUND")
    assert (await c.get(server.url("/api/v1/ticks/BAD/history?limit=0"))).status_code == 200  # issue 18: clamped
    assert_error(await c.get(server.url("/api/v1/ticks/BAD/history?limit=abc")), 400, "VALIDATION_ERROR")
    assert_error(await c.get(server.url("/api/v1/ticks/BAD/history?before=nan")), 400, "VALIDATION_ERROR")
    assert_error(await c.delete(server.url("/api/v1/symbols")), 405, "METHOD_NOT_ALLOWED")
    assert (await c.get(server.url("/api/v1/symbols?active=false"))).json() == []
    assert (await c.get(server.url("/api/v1/health/readiness"))).status_code == 200


async def test_request_id_echoed_or_generated(server):
    """x-request-id is echoed when given, generated otherwise, on success and on error."""
    r = await server.client.get(server.url("/api/v1/health/liveness"), headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123" and r.json() == {"ok": True}
    r = await server.client.get(server.url("/nope"))
    assert len(r.headers["x-request-id"]) == 32


async def test_health_supervisor_metrics_openapi(server):
    """Liveness, readiness, the supervision tree, Prometheus metrics and the OpenAPI document are served."""
    c = server.client
    await server.post_ticks([item("OPS", 1, M0)])
    for path in ("/health/liveness", "/api/v1/health/liveness"):
        assert (await c.get(server.url(path))).json() == {"ok": True}
    for path in ("/health/readiness", "/api/v1/health/readiness"):
        r = await c.get(server.url(path))
        assert r.json() == {"status": "ready", "checks": {"engine": "ok", "db": "off", "redis": "off"}}
        conforms(r, path)
    tree = (await c.get(server.url("/ops/health/supervisor"))).json()
    [router] = [ch for ch in tree["children"] if ch["name"] == "router"]
    assert router["children"][0]["name"] == "symbol:OPS" and router["children"][0]["state"] == "running"
    text = (await c.get(server.url("/ops/metrics"))).text
    assert 'candlewick_ticks_total{outcome="accepted"} 1.0' in text
    assert "candlewick_flush_seconds_bucket" in text and "candlewick_http_request_seconds" in text
    assert "candlewick_sse_subscribers" in text
    await server.post_ticks([item("OPS", -1, M0)])
    text = (await c.get(server.url("/ops/metrics"))).text
    assert 'candlewick_rejected_requests_total{code="VALIDATION_ERROR"} 1.0' in text
    assert (await c.get(server.url("/api/v1/ops/metrics"))).status_code == 200
    spec = (await c.get(server.url("/api/v1/openapi.json"))).json()
    assert spec["openapi"].startswith("3.") and "/api/v1/webhooks/ticks" in spec["paths"]


async def test_cors_allowed_origin_only(nursery):
    """Configured origins get CORS headers (and preflight answers); others get none."""
    live = await start_live_server(nursery, cors_allow_origins=("http://dash.example",))
    try:
        c = live.client
        r = await c.get(live.url("/api/v1/symbols"), headers={"Origin": "http://dash.example"})
        assert r.headers["access-control-allow-origin"] == "http://dash.example"
        r = await c.get(live.url("/api/v1/symbols"), headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        pre = await c.options(live.url("/api/v1/webhooks/ticks"), headers={
            "Origin": "http://dash.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, content-type"})
        assert pre.status_code in (200, 204)
        assert "x-api-key" in pre.headers["access-control-allow-headers"]
    finally:
        await live.client.aclose()
        live.running.stop()


async def test_overloaded_answers_503_with_retry_after(nursery, monkeypatch):
    """When the pipeline stays full past the deadline the request gets 503 OVERLOADED + Retry-After."""
    live = await start_live_server(nursery, max_in_flight_ticks=10, ingest_deadline=0.2)
    gate = trio.Event()
    real_write = live.engine.store.write

    async def stalled(batch):
        await gate.wait()
        await real_write(batch)

    monkeypatch.setattr(live.engine.store, "write", stalled)
    try:
        async with trio.open_nursery() as inner:
            inner.start_soon(live.post_ticks, [item("OVL", 1 + i, M0 + i) for i in range(10)])
            await trio.testing.wait_all_tasks_blocked()
            r = await live.post_ticks([item("OVL2", 1, M0)])
            assert_error(r, 503, "OVERLOADED")
            assert r.headers["retry-after"] == "1"
            gate.set()
        assert (await live.client.get(live.url("/api/v1/ticks/OVL2"))).status_code == 404
    finally:
        gate.set()
        await live.client.aclose()
        live.running.stop()


async def test_failed_actor_turns_readiness_503_and_only_its_symbol(nursery, monkeypatch):
    """An actor past its restart limit makes readiness 503 naming it; other symbols keep working."""
    from collections import Counter

    from candlewick.domain import BookTable
    from tests._faults import faulty_apply

    monkeypatch.setattr(BookTable, "apply", faulty_apply(Counter({"BOOM": 1_000})))  # BOOM's every apply raises
    live = await start_live_server(nursery, max_restarts=1)
    try:
        for _ in range(3):
            r = await live.post_ticks([item("BOOM", 1, M0)])
            assert r.status_code == 503 and r.headers["retry-after"]
        assert r.json()["error"]["code"] == "SYMBOL_FAILED"
        ready = await live.client.get(live.url("/health/readiness"))
        assert ready.status_code == 503
        assert ready.json()["checks"]["engine"] == "fail" and ready.json()["failedActors"] == ["symbol:BOOM"]
        assert (await live.post_ticks([item("FINE", 1, M0)])).status_code == 202
        tree = (await live.client.get(live.url("/ops/health/supervisor"))).json()
        states = {c["name"]: c["state"] for c in tree["children"][0]["children"]}
        assert states == {"symbol:BOOM": "failed", "symbol:FINE": "running"}
    finally:
        await live.client.aclose()
        live.running.stop()


async def test_fill_prev_makes_flat_candles_in_gaps_and_pages_walk_them(server):
    """fill=prev: minutes without trades between two candles are flat candles at the previous close,
    volume 0, count 0, vwap null, filled true (real ones filled false); SMA10 counts them; walking
    pages by nextCursor gives the same series; a bad fill is 400."""
    minutes = [0, 1, 5, 6, 10]
    await server.post_ticks([item("GAP", 100 + m, M0 - 600 + 60 * m + 7, 2.0, key=f"g{m}") for m in minutes])
    c, path = server.client, "/api/v1/ticks/GAP/history"
    r = await c.get(server.url(path), params={"view": "ohlc1m", "fill": "prev"})
    conforms(r, "/api/v1/ticks/{symbol}/history")
    got = r.json()["items"]
    assert [x["ts"] for x in got] == [M0 - 600 + 60 * m for m in range(11)]
    closes = [100 + max(m for m in minutes if m <= k) for k in range(11)]
    assert [x["close"] for x in got] == closes
    assert [x["filled"] for x in got] == [k not in minutes for k in range(11)]
    flat = got[2]
    assert (flat["open"], flat["high"], flat["low"], flat["volume"], flat["count"], flat["vwap"]) == \
        (101, 101, 101, 0, 0, None)
    assert [x["sma10"] for x in got[:9]] == [None] * 9
    assert [x["sma10"] for x in got[9:]] == pytest.approx([sum(closes[0:10]) / 10, sum(closes[1:11]) / 10])
    assert r.json()["nextCursor"] is None
    walked, before = [], None
    while True:
        params = {"fill": "prev", "limit": 3, **({"before": before} if before else {})}
        page = (await c.get(server.url(path), params=params)).json()
        walked[:0] = page["items"]
        before = page["nextCursor"]
        if before is None:
            break
    assert walked == got
    inside = (await c.get(server.url(path), params={"fill": "prev", "before": M0 - 600 + 60 * 4 + 30})).json()
    assert [x["ts"] for x in inside["items"]] == [M0 - 600 + 60 * m for m in range(5)]
    plain = (await c.get(server.url(path), params={"view": "ohlc1m"})).json()["items"]
    assert [x["ts"] for x in plain] == [M0 - 600 + 60 * m for m in minutes] and "filled" not in plain[0]
    for bad in ("next", "", "PREV"):
        body = assert_error(await c.get(server.url(path), params={"view": "ohlc1m", "fill": bad}), 400,
                            "VALIDATION_ERROR")
        assert body["error"]["details"][0]["path"] == "query.fill"


async def test_4h_and_1w_intervals(server):
    """4h candles align to the epoch, 1w candles to Monday 00:00 UTC: a trade on Sunday 23:59:59.5 and
    one on Monday 00:00 fall in different weeks; both intervals are in the OpenAPI document."""
    monday = 1_730_678_400  # 2024-11-04 00:00 UTC
    await server.post_ticks([item("WEEK", 10, monday - 86_400 * 3, key="w0"), item("WEEK", 11, monday - 0.5, key="w1"),
                             item("WEEK", 12, monday, key="w2"), item("WEEK", 13, monday + 3_600 * 5, key="w3")])
    c, path = server.client, "/api/v1/ticks/WEEK/history"
    weeks = (await c.get(server.url(path), params={"interval": "1w"})).json()["items"]
    assert [(x["ts"], x["open"], x["close"], x["count"]) for x in weeks] == \
        [(monday - 604_800, 10, 11, 2), (monday, 12, 13, 2)]
    fours = (await c.get(server.url(path), params={"interval": "4h"})).json()["items"]
    assert [x["ts"] for x in fours] == [monday - 86_400 * 3, monday - 14_400, monday, monday + 14_400]
    enum = next(p for p in document()["paths"]["/api/v1/ticks/{symbol}/history"]["get"]["parameters"]
                if p["name"] == "interval")["schema"]["enum"]
    assert {"4h", "1w"} <= set(enum)
