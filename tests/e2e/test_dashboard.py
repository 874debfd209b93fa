"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright).

Needs: apt package ``chromium`` and pip package ``playwright`` (no ``playwright install``:
we launch the system chromium). Without them these tests skip, loudly.

The tests wait by polling what the page publishes after each draw (``window.__candlewick``)
with deadlines, never with fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from tests.conftest import API_KEY, free_port, server_process

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

STATIC = Path(__file__).resolve().parents[2] / "candlewick" / "http" / "static"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
DEADLINE_MS = 20_000
SYMBOL = "E2E-DASH"


def _sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("BROWSER TEST SKIPPED: the Python package 'playwright' is not installed "
                    "(pip install playwright; do not run 'playwright install')")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"BROWSER TEST SKIPPED: no chromium at {CHROMIUM} (apt-get install -y chromium)")
    return sync_playwright


@contextlib.contextmanager
def browser_page(width: int = 1440, height: int = 900) -> Iterator:
    """A fresh chromium page; collects uncaught page errors in ``page.errors``."""
    sync_playwright = _sync_playwright()
    # Candlewick imports trio-asyncio, whose event-loop policy makes trio-flavoured loops; Playwright's
    # sync API needs a plain asyncio loop, so use the standard policy for the browser's lifetime.
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
                page = context.new_page()
                page.errors = []
                page.on("pageerror", lambda exc: page.errors.append(str(exc)))
                page.set_default_timeout(DEADLINE_MS)
                yield page
                context.close()
            finally:
                browser.close()
    finally:
        asyncio.set_event_loop_policy(None)


def hook(page) -> dict:
    return page.evaluate("() => window.__candlewick || null") or {}


def wait_page(page, body: str, what: str, show: str = "window.__candlewick || null"):
    """Poll the JavaScript function body ``body`` until it returns something truthy, with a deadline;
    on a timeout, the assertion error shows ``show`` evaluated in the page."""
    try:
        page.wait_for_function(f"() => {{ {body} }}", timeout=DEADLINE_MS, polling=50)
    except Exception as exc:  # playwright's TimeoutError: say what the page did show
        raise AssertionError(f"timed out waiting for {what}; {show} = {page.evaluate('() => ' + show)!r}; "
                             f"page errors: {page.errors!r}") from exc


def wait_hook(page, condition: str, what: str) -> dict:
    """Poll ``window.__candlewick`` (as ``h``) until ``condition`` holds, with a deadline."""
    wait_page(page, f"const h = window.__candlewick; return !!h && ({condition});", what)
    return hook(page)


def post_ticks(base_url: str, items: list[dict]) -> dict:
    r = httpx.post(base_url + "/api/v1/webhooks/ticks", json={"source": "test", "items": items},
                   headers={"x-api-key": API_KEY}, timeout=10)
    assert r.status_code == 202, r.text
    return r.json()


def seed_history(base_url: str, symbol: str, minutes: int = 15) -> float:
    """Three trades in each of the last ``minutes`` minutes (including the open one); returns the last price."""
    now = time.time()
    current = math.floor(now / 60) * 60
    items = []
    price = 100.0
    for m in range(minutes - 1, -1, -1):
        minute = current - m * 60
        for k, offset in enumerate((0.5, 20.0, 40.0)):
            ts = min(minute + offset, now - 0.01)
            price = round(price * (1 + (0.004 if (m + k) % 3 else -0.003)), 4)
            items.append({"symbol": symbol, "price": price, "ts": ts, "volume": 1.0 + k,
                          "idempotencyKey": f"seed:{symbol}:{m}:{k}"})
    body = post_ticks(base_url, items)
    assert body["accepted"] == len(items), body
    return price


def test_dashboard_draws_history_and_follows_live_ticks(tmp_path):
    _sync_playwright()
    with server_process(tmp_path, "--feeder") as sp:
        seed_history(sp.base_url, SYMBOL)
        hist = httpx.get(sp.base_url + f"/api/v1/ticks/{SYMBOL}/history", params={"view": "ohlc1m", "limit": 50}).json()
        assert len(hist["items"]) >= 15 and hist["items"][-1]["sma10"] is not None, hist

        # the page itself and its assets are served
        index = httpx.get(sp.base_url + "/")
        assert index.status_code == 200 and "text/html" in index.headers["content-type"]
        for asset in ("/static/app.js", "/static/style.css"):
            assert httpx.get(sp.base_url + asset).status_code == 200, asset

        with browser_page() as page:
            page.goto(f"{sp.base_url}/?symbol={SYMBOL}")
            h = wait_hook(page, f"h.symbol === '{SYMBOL}' && h.candles >= 15 && h.smaPoints >= 6 && h.state === 'live'",
                          "15 candles with the SMA10 line, connection live")
            assert h["candles"] >= 15 and h["smaPoints"] >= 6

            # a distinctive trade in the open minute moves the newest candle's close
            ts = time.time()
            post_ticks(sp.base_url, [{"symbol": SYMBOL, "price": 123.456, "ts": ts, "volume": 2.5,
                                      "idempotencyKey": "live:1"}])
            h = wait_hook(page, "h.lastClose === 123.456", "the live tick to reach the open candle")
            assert h["lastBucket"] == math.floor(ts / 60) * 60

            # side panels: latest tick, metrics, health (readiness + supervision tree)
            page.wait_for_function("() => document.querySelector('#latest [data-k=price]').textContent.includes('123.4')")
            # the metrics window follows the live tick too
            page.wait_for_function("() => document.querySelector('#metrics [data-k=last]').textContent.includes('123.456')")
            page.wait_for_function(f"() => document.querySelector('#actors').textContent.includes('symbol:{SYMBOL}')")
            page.wait_for_function("() => document.querySelector('#health-pill').textContent === 'ready'")
            # the symbol list shows the feeder's symbols with prices too
            page.wait_for_function("() => [...document.querySelectorAll('#symbols li')].some("
                                   "li => li.dataset.symbol === 'BTCUSDT' && li.querySelector('.s-last').textContent !== '—')")

            shot = tmp_path / "dashboard.png"
            box = page.locator("#chart").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.4)  # show the crosshair
            page.screenshot(path=str(shot), full_page=True)
            shutil.copy(shot, "/tmp/dashboard.png")

            # zoom with the mouse wheel: fewer candles drawn, the newest still last
            box = page.locator("#chart").bounding_box()
            spacing = hook(page)["spacing"]
            page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
            page.mouse.wheel(0, -300)
            wait_hook(page, f"h.spacing > {spacing} && h.candles > 0", "the chart to zoom in on a wheel event")
            page.dblclick("#chart")
            wait_hook(page, f"h.spacing === {spacing} && h.offset === 0", "double-click to reset the view")

            # a rolled-up interval: history refetched, then live ticks merged client-side
            page.click("#intervals button[data-iv='5m']")
            h = wait_hook(page, "h.interval === '5m' && h.candles >= 3 && h.lastClose === 123.456",
                          "5-minute candles")
            post_ticks(sp.base_url, [{"symbol": SYMBOL, "price": 124.5, "ts": time.time(), "volume": 1.0,
                                      "idempotencyKey": "live:2"}])
            h = wait_hook(page, "h.lastClose === 124.5", "a live tick merged into the 5-minute candle")
            assert h["lastBucket"] % 300 == 0
            assert page.errors == [], page.errors

        # phone width: no horizontal overflow, chart still drawn
        with browser_page(390, 844) as phone:
            phone.goto(f"{sp.base_url}/?symbol={SYMBOL}")
            wait_hook(phone, "h.candles >= 10 && h.state === 'live'", "the chart at phone width")
            overflow = phone.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"page is {overflow}px wider than a phone screen"
            phone.screenshot(path=str(tmp_path / "dashboard-phone.png"), full_page=True)
            shutil.copy(tmp_path / "dashboard-phone.png", "/tmp/dashboard-phone.png")
            assert phone.errors == [], phone.errors


RESYNC_STREAM = ('retry: 300\n\ndata: {"ok": true, "connectedAt": 0, "filterSymbol": null}\n\n'
                 'event: resync\ndata: {}\n\n')


def test_resync_refills_from_history_and_reconnects(tmp_path):
    """The first stream says ``event: resync`` and ends; the page refills and goes live again."""
    _sync_playwright()
    with server_process(tmp_path, "--feeder") as sp:
        seed_history(sp.base_url, SYMBOL)
        with browser_page() as page:
            streams: list[str] = []
            history_requests: list[str] = []
            page.on("request", lambda r: history_requests.append(r.url) if "/history" in r.url else None)

            def sse(route):
                streams.append(route.request.url)
                if len(streams) == 1:
                    route.fulfill(status=200, headers={"content-type": "text/event-stream",
                                                       "cache-control": "no-cache"}, body=RESYNC_STREAM)
                else:
                    route.continue_()

            page.route("**/realtime/ticks*", sse)
            page.goto(f"{sp.base_url}/?symbol={SYMBOL}")
            wait_hook(page, "h.resyncs === 1 && h.refills >= 1 && h.candles >= 15 && h.state === 'live'",
                          "a resync, a refill from history, and the live stream again")
            assert len(streams) >= 2, streams
            assert len([u for u in history_requests if SYMBOL in u]) >= 2, history_requests
            post_ticks(sp.base_url, [{"symbol": SYMBOL, "price": 99.125, "ts": time.time(), "volume": 1.0,
                                      "idempotencyKey": "after-resync"}])
            wait_hook(page, "h.lastClose === 99.125", "live ticks after the reconnect")
            assert page.errors == [], page.errors


HELLO_STREAM = 'retry: 300\n\ndata: {"ok": true, "connectedAt": 0, "filterSymbol": null}\n\n'
DRAWN_TEXT = """(() => {  // every string drawn on a canvas, for the test to look for
  const drawn = window.__drawnText = new Set();
  const fillText = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
    drawn.add(String(text));
    return fillText.call(this, text, ...rest);
  };
})();"""
VISIBLE_ROWS = ("[...document.querySelectorAll('#symbols li')].filter((li) => li.getClientRects().length)"
                ".map((li) => li.dataset.symbol)")


def text_of(selector: str) -> str:
    """A JavaScript expression: the text of ``selector``, or null."""
    return f"(document.querySelector({selector!r}) || {{}}).textContent || null"


class Seeded(NamedTuple):
    base_url: str
    first_minute: int  # the start of SYMBOL's oldest candle


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Iterator[Seeded]:
    """One server for the issue-18 tests: SYMBOL traded in the last 15 minutes, E2E-SHORT in the last
    3, E2E-OLD 25 h ago (at 50) and now (at 55)."""
    _sync_playwright()
    with server_process(tmp_path_factory.mktemp("seeded"), "--feeder") as sp:
        seed_history(sp.base_url, SYMBOL)
        seed_history(sp.base_url, "E2E-SHORT", minutes=3)
        now = time.time()
        body = post_ticks(sp.base_url, [
            {"symbol": "E2E-OLD", "price": 50.0, "ts": now - 25 * 3600, "volume": 1.0, "idempotencyKey": "old:1"},
            {"symbol": "E2E-OLD", "price": 55.0, "ts": now, "volume": 1.0, "idempotencyKey": "old:2"}])
        assert body["accepted"] == 2, body
        hist = httpx.get(sp.base_url + f"/api/v1/ticks/{SYMBOL}/history", params={"view": "ohlc1m", "limit": 50}).json()
        yield Seeded(sp.base_url, hist["items"][0]["ts"])


def open_dashboard(page, base_url: str, symbol: str = SYMBOL, candles: int = 15) -> None:
    page.goto(f"{base_url}/?symbol={symbol}")
    wait_hook(page, f"h.symbol === '{symbol}' && h.total >= {candles}", f"{symbol}'s {candles} candles")


def test_gone_symbols_leave_the_list_when_the_stream_reconnects(seeded):
    """A restart as the page sees it: until the test says the server is back, the symbol list holds
    E2E-GONE (which the restarted server no longer has) and the stream keeps dropping."""
    with browser_page() as page:
        server = {"restarted": False}

        def symbols(route):
            if server["restarted"]:
                route.continue_()
                return
            real = route.fetch()
            route.fulfill(response=real, json=real.json() + [
                {"symbol": "E2E-GONE", "base": "", "quote": "", "active": True}])

        def stream(route):
            if server["restarted"]:
                route.continue_()
            else:
                route.fulfill(status=200, headers={"content-type": "text/event-stream",
                                                   "cache-control": "no-cache"}, body=HELLO_STREAM)

        page.route("**/api/v1/symbols*", symbols)
        page.route("**/realtime/ticks*", stream)
        open_dashboard(page, seeded.base_url)
        wait_page(page, "return !!document.querySelector('#symbols li[data-symbol=\"E2E-GONE\"]');",
                  "E2E-GONE in the list before the restart", VISIBLE_ROWS)
        server["restarted"] = True
        wait_page(page, "return !document.querySelector('#symbols li[data-symbol=\"E2E-GONE\"]') "
                  "&& !!document.querySelector('#symbols li[data-symbol=\"E2E-OLD\"]');",
                  "E2E-GONE to leave the list once the stream reconnects", VISIBLE_ROWS)
        wait_hook(page, "h.state === 'live'", "the live stream after the reconnect")
        assert page.errors == [], page.errors


def test_filter_hides_rows_and_enter_opens_the_first_shown(seeded):
    with browser_page() as page:
        open_dashboard(page, seeded.base_url)
        wait_page(page, "return !!document.querySelector('#symbols li[data-symbol=\"BTCUSDT\"]');",
                  "the feeder's symbols listed", VISIBLE_ROWS)
        page.fill("#symbol-filter", "e2e-")
        assert page.evaluate(VISIBLE_ROWS) == [SYMBOL, "E2E-OLD", "E2E-SHORT"]
        page.fill("#symbol-filter", "short")
        assert page.evaluate(VISIBLE_ROWS) == ["E2E-SHORT"]
        page.press("#symbol-filter", "Enter")
        wait_hook(page, "h.symbol === 'E2E-SHORT' && h.total === 3", "Enter in the filter to open E2E-SHORT")
        page.fill("#symbol-filter", "")
        assert "BTCUSDT" in page.evaluate(VISIBLE_ROWS)
        assert page.errors == [], page.errors


def test_change_says_what_it_spans(seeded):
    """SYMBOL's data began 14 minutes ago: its change is "since <then> (14m)", not "24h"; E2E-OLD's
    data does reach back a day, and its change over the day is labelled "24h"."""
    with browser_page() as page:
        open_dashboard(page, seeded.base_url)
        since = time.strftime("%H:%M", time.localtime(seeded.first_minute))
        wait_page(page, "return document.querySelector('#sym-change').textContent.includes('since');",
                  "the change to say since when", text_of("#sym-change"))
        change = page.inner_text("#sym-change")
        assert re.fullmatch(rf"[+-]\d+\.\d\d% since {since} \(1[4-6]m\)", change), (change, since)
        assert page.get_attribute(f"#symbols li[data-symbol='{SYMBOL}'] .s-chg", "title") == change.split(" ", 1)[1]
        assert "24h" not in page.inner_text(".symbol-cols")
        old_chg = "#symbols li[data-symbol='E2E-OLD'] .s-chg"
        wait_page(page, f"return (document.querySelector({old_chg!r}) || {{}}).title === '24h';",
                  "E2E-OLD's change over 24 h", text_of(old_chg))
        assert page.inner_text(old_chg) == "+10.00%"
        assert page.errors == [], page.errors


def test_volume_bars_have_a_scale(seeded, tmp_path):
    """Every seeded minute traded 6: the scale says 6.000 at the top and 3.000 halfway."""
    with browser_page() as page:
        page.add_init_script(DRAWN_TEXT)
        open_dashboard(page, seeded.base_url)
        wait_page(page, "const d = window.__drawnText; return d.has('6.000') && d.has('3.000') && d.has('vol');",
                  "the volume scale (6.000, 3.000, vol) drawn", "[...window.__drawnText]")
        page.screenshot(path=str(tmp_path / "dashboard-volume.png"), full_page=True)
        assert page.errors == [], page.errors


def test_sma10_says_why_it_is_missing(seeded):
    """E2E-SHORT has 3 one-minute candles: SMA10 needs 10."""
    with browser_page() as page:
        open_dashboard(page, seeded.base_url, "E2E-SHORT", 3)
        hint = "needs 10 one-minute candles, 3 so far"
        wait_page(page, f"return {text_of('#sma-wait')} === {hint!r};", "the SMA10 hint in the legend",
                  text_of("#legend-sma"))
        assert page.is_visible("#sma-wait")
        assert re.search(r"SMA10 —\s*\(3/10 candles\)", page.inner_text("#ohlc")), page.inner_text("#ohlc")
        assert page.get_attribute("#ohlc .sma-wait", "title") == "SMA10 " + hint
        assert page.errors == [], page.errors


def test_1d_interval_button(seeded, tmp_path):
    """Daily candles, aligned to 00:00 UTC like the API's; SYMBOL's 15 minutes make one (two across midnight)."""
    with browser_page() as page:
        open_dashboard(page, seeded.base_url)
        assert page.locator("#intervals button[data-iv='1d']").count() == 1, "no 1d interval button"
        page.click("#intervals button[data-iv='1d']")
        wait_hook(page, "h.interval === '1d' && h.total >= 1 && h.total <= 2 && h.candles === h.total "
                  "&& h.lastBucket % 86400 === 0", "daily candles")
        assert "interval=1d" in page.url
        page.screenshot(path=str(tmp_path / "dashboard-1d.png"), full_page=True)
        assert page.errors == [], page.errors


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@contextlib.contextmanager
def static_site(root: Path, port: int) -> Iterator[str]:
    """Serve ``root`` from another origin (another loopback port) in a thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


CROSS_ORIGIN_PROBE = """async (base) => {
  const out = {};
  try {
    const r = await fetch(base + '/api/v1/symbols');
    out.status = r.status;
    out.symbols = (await r.json()).map((s) => s.symbol);
  } catch (e) { out.fetchError = String(e); }
  out.sse = await new Promise((resolve) => {
    const es = new EventSource(base + '/realtime/ticks');
    const timer = setTimeout(() => { es.close(); resolve({error: 'no message within 10s'}); }, 10000);
    es.onmessage = (ev) => { clearTimeout(timer); es.close(); resolve(JSON.parse(ev.data)); };
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) {
      clearTimeout(timer); resolve({error: 'EventSource closed'}); } };
  });
  return out;
}"""


def test_cross_origin_fetch_sse_and_dashboard(tmp_path):
    _sync_playwright()
    site = tmp_path / "site"
    (site / "static").mkdir(parents=True)
    (site / "blank.html").write_text("<!doctype html><title>other origin</title><p>other origin</p>")
    # the dashboard itself, hosted elsewhere and pointed at Candlewick with ?api=&realtime=
    shutil.copy(STATIC / "index.html", site / "index.html")
    for name in ("app.js", "style.css"):
        shutil.copy(STATIC / name, site / "static" / name)

    site_port = free_port()
    origin = f"http://127.0.0.1:{site_port}"
    with static_site(site, site_port), \
            server_process(tmp_path, "--feeder", env={"CORS_ALLOW_ORIGINS": origin}) as sp, \
            browser_page() as page:
        page.goto(origin + "/blank.html")
        out = page.evaluate(CROSS_ORIGIN_PROBE, sp.base_url)
        assert out.get("status") == 200 and isinstance(out.get("symbols"), list), out
        assert out["sse"].get("ok") is True and "connectedAt" in out["sse"], out

        page.goto(f"{origin}/?api={sp.base_url}&realtime={sp.base_url}/realtime/ticks&symbol=BTCUSDT")
        wait_hook(page, "h.symbol === 'BTCUSDT' && h.candles >= 1 && h.state === 'live'",
                  "the dashboard on another origin to draw live BTCUSDT candles")
        assert page.errors == [], page.errors

    # control: without CORS_ALLOW_ORIGINS the browser refuses both
    with static_site(site, site_port), server_process(tmp_path, "--feeder") as sp, browser_page() as page:
        page.goto(origin + "/blank.html")
        out = page.evaluate(CROSS_ORIGIN_PROBE, sp.base_url)
        assert "fetchError" in out and "error" in out["sse"], out
