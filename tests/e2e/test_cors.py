"""CORS against the real server: the old React dashboard's requests (Authorization, X-User) pass from an allowed origin."""

from __future__ import annotations

import pytest

from tests.conftest import start_live_server

DASHBOARD = "http://localhost:5173"  # the old dashboard's Vite dev server


@pytest.fixture
async def cors_server(nursery):
    """A real server with CORS_ALLOW_ORIGINS set to the old dashboard's origin."""
    live = await start_live_server(nursery, cors_allow_origins=(DASHBOARD,))
    yield live
    await live.client.aclose()
    live.running.stop()


def header_list(value: str) -> set[str]:
    return {v.strip().lower() for v in value.split(",") if v.strip()}


async def test_old_dashboard_with_a_saved_token_loads_symbols(cors_server):
    """The old dashboard's axios client with a token: its preflight allows authorization and x-user, then
    the GET that carries them answers with the CORS headers (the dashboard hung on "Loading symbols...")."""
    c, url = cors_server.client, cors_server.url("/api/v1/symbols")
    pre = await c.options(url, headers={"Origin": DASHBOARD, "Access-Control-Request-Method": "GET",
                                        "Access-Control-Request-Headers": "authorization,x-user"})
    assert pre.status_code in (200, 204), pre.text
    assert pre.headers["access-control-allow-origin"] == DASHBOARD
    assert "get" in header_list(pre.headers["access-control-allow-methods"])
    assert {"authorization", "x-user"} <= header_list(pre.headers["access-control-allow-headers"])
    assert {"origin", "access-control-request-headers"} <= header_list(pre.headers["vary"])
    r = await c.get(url, headers={"Origin": DASHBOARD, "Authorization": "Bearer x", "X-User": "alice"})
    assert r.status_code == 200 and r.json() == []
    assert r.headers["access-control-allow-origin"] == DASHBOARD
    assert "origin" in header_list(r.headers["vary"])
    assert {"x-request-id", "retry-after", "link"} <= header_list(r.headers["access-control-expose-headers"])


async def test_preflight_answers_the_headers_asked_for(cors_server):
    """A preflight is answered for the header names it lists; one that lists none (or no valid list) gets the
    fixed list, which holds every header Candlewick's and the old dashboard's clients send."""
    c, url = cors_server.client, cors_server.url("/api/v1/webhooks/ticks")
    ask = {"Origin": DASHBOARD, "Access-Control-Request-Method": "POST"}
    r = await c.options(url, headers={**ask, "Access-Control-Request-Headers": "X-API-Key, Content-Type ,x-trace"})
    assert header_list(r.headers["access-control-allow-headers"]) == {"x-api-key", "content-type", "x-trace"}
    fixed = {"content-type", "x-api-key", "x-request-id", "last-event-id", "cache-control", "authorization", "x-user"}
    for bad in ("x-api-key, bad header", "a;b", ",", "x" * 2000):
        r = await c.options(url, headers={**ask, "Access-Control-Request-Headers": bad})
        assert header_list(r.headers["access-control-allow-headers"]) == fixed, bad
    r = await c.options(url, headers=ask)
    assert header_list(r.headers["access-control-allow-headers"]) == fixed


async def test_other_origins_get_no_cors_headers(cors_server):
    """An origin not configured gets no CORS header, on the preflight or the request, only Vary: Origin."""
    c, url = cors_server.client, cors_server.url("/api/v1/symbols")
    evil = "http://evil.example"
    pre = await c.options(url, headers={"Origin": evil, "Access-Control-Request-Method": "GET",
                                        "Access-Control-Request-Headers": "authorization,x-user"})
    r = await c.get(url, headers={"Origin": evil, "Authorization": "Bearer x", "X-User": "alice"})
    for answer in (pre, r):
        assert not [h for h in answer.headers if h.lower().startswith("access-control-")], answer.headers
        assert header_list(answer.headers["vary"]) == {"origin"}


async def test_vary_is_added_to_not_replaced():
    """A response that already varies on something keeps it; Origin and the requested headers are added."""
    from quart import Response
    from quart_trio import QuartTrio

    from candlewick.http._hooks import add_cors_headers

    app = QuartTrio(__name__)
    async with app.test_request_context("/api/v1/symbols", method="OPTIONS", headers={
            "Origin": DASHBOARD, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-user"}):
        response = Response("", headers={"Vary": "Accept-Encoding"})
        add_cors_headers(response, frozenset({DASHBOARD}), allow_all=False)
    assert header_list(response.headers["Vary"]) == {"accept-encoding", "origin", "access-control-request-headers"}
    assert response.headers["Access-Control-Allow-Headers"] == "x-user"
