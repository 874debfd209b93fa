"""Observability against the real server: the access log, request ids in error logs, metric types, plain log files."""

from __future__ import annotations

import logging

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import API_KEY, server_process

BIG = b'{"source":"s","items":[' + b" " * (4 * 1024 * 1024) + b"]}"  # over the 4 MiB limit


@pytest.fixture
def logged(caplog):
    """Every structlog event logged while the test runs, as ``(logger name, level number, event dict)``."""
    return lambda: [(r.name, r.levelno, dict(r.msg)) for r in caplog.records if isinstance(r.msg, dict)]


def access_lines(logged) -> dict[str, tuple[int, dict]]:
    """The access log's lines by request id."""
    return {e.get("request_id"): (level, e) for name, level, e in logged()
            if name == "candlewick.access" and e.get("event") == "request"}


async def test_every_answer_gets_one_access_log_line(server, logged):
    """One line per request, with method, path, status, duration and request id, at a level by status:
    including 401, 404, 405 and 413 answered before the body was read, and an SSE stream as it starts."""
    c = server.client
    sent = [
        ("ok", "GET", "/api/v1/symbols", {}, None, 200, logging.INFO),
        ("no-key", "POST", "/api/v1/webhooks/ticks", {}, b'{"source":"s","items":[]}', 401, logging.WARNING),
        ("no-route", "GET", "/api/v1/nowhere", {}, None, 404, logging.WARNING),
        ("wrong-method", "DELETE", "/api/v1/symbols", {}, None, 405, logging.WARNING),
        ("too-big", "POST", "/api/v1/webhooks/ticks", {"x-api-key": API_KEY}, BIG, 413, logging.WARNING),
        ("bad-limit", "GET", "/api/v1/ticks/X/history", {}, None, 400, logging.WARNING),
    ]
    for rid, method, path, headers, body, status, _ in sent:
        url = server.url(path) + ("?limit=x" if rid == "bad-limit" else "")
        r = await c.request(method, url, headers={"x-request-id": rid, **headers}, content=body)
        assert r.status_code == status and r.headers["x-request-id"] == rid
    async with c.stream("GET", server.url("/realtime/ticks"), headers={"x-request-id": "sse"}) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                break  # the stream is open; it is never closed by the server in this test
        lines = access_lines(logged)
    for rid, method, path, _, _, status, level in [*sent, ("sse", "GET", "/realtime/ticks", None, None, 200, logging.INFO)]:
        assert rid in lines, f"no access log line for {rid}: {sorted(lines)}"
        got_level, entry = lines[rid]
        assert (entry["method"], entry["path"], entry["status"], got_level) == (method, path, status, level), entry
        assert isinstance(entry["duration_ms"], float) and 0 <= entry["duration_ms"] < 10_000, entry
    assert len([n for n, _, e in logged() if n == "candlewick.access"]) == len(sent) + 1  # one line each


async def test_unhandled_error_log_carries_the_request_id(server, logged, monkeypatch):
    """A 500's unhandled_error line (and its access line, at error) carries the request id the answer names."""
    async def broken(active_only, limit, after=None):
        raise RuntimeError("injected bug")

    monkeypatch.setattr(server.engine.store, "symbols", broken)
    r = await server.client.get(server.url("/api/v1/symbols"), headers={"x-request-id": "trace-500"})
    assert r.status_code == 500 and r.json()["error"]["code"] == "INTERNAL"
    rid = r.headers["x-request-id"]
    [(level, entry)] = [(level, e) for _, level, e in logged() if e.get("event") == "unhandled_error"]
    assert level == logging.ERROR and entry.get("request_id") == rid == "trace-500", entry
    assert access_lines(logged)[rid][0] == logging.ERROR
    # the id is the request's own: what a later request logs carries that request's id, not this one's
    seen = []

    async def recording(active_only, limit, after=None):
        seen.append(structlog.contextvars.get_contextvars().get("request_id"))
        return []

    monkeypatch.setattr(server.engine.store, "symbols", recording)
    r = await server.client.get(server.url("/api/v1/symbols"))
    assert r.status_code == 200 and seen == [r.headers["x-request-id"]] and seen[0] != "trace-500", seen


def samples(text: str) -> dict[str, tuple[str, dict[tuple, float]]]:
    """Each exposed sample name with its family's type and its values by label set."""
    out: dict[str, tuple[str, dict[tuple, float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, (family.type, {}))[1][tuple(sorted(s.labels.items()))] = s.value
    return out


async def test_metrics_exposition_types_and_names(server):
    """/ops/metrics parses; every _total series is a counter (the SSE event count among them, by outcome), and
    the all-mailboxes gauge has no _total suffix."""
    assert (await server.post_ticks([{"symbol": "M", "price": 1, "ts": 1_700_000_000}])).status_code == 202
    exposed = samples((await server.client.get(server.url("/ops/metrics"))).text)
    not_counters = {name: typ for name, (typ, _) in exposed.items() if name.endswith("_total") and typ != "counter"}
    assert not_counters == {}
    typ, sse = exposed["candlewick_sse_events_total"]
    assert typ == "counter" and set(sse) == {(("outcome", "sent"),), (("outcome", "dropped"),)}
    assert exposed["candlewick_symbol_mailboxes_depth"][0] == "gauge"
    assert exposed["candlewick_ticks_total"][1][(("outcome", "accepted"),)] == 1


async def test_payload_too_large_counts_as_a_rejected_request(server):
    """A 413 on either write path counts in candlewick_rejected_requests_total, as a 401 does."""
    c = server.client
    for path in ("/api/v1/webhooks/ticks", "/api/v1/webhooks/symbols"):
        r = await c.post(server.url(path), content=BIG, headers={"x-api-key": API_KEY})
        assert r.status_code == 413
    assert (await c.post(server.url("/api/v1/webhooks/ticks"), content=b"{}")).status_code == 401
    rejected = samples((await c.get(server.url("/ops/metrics"))).text)["candlewick_rejected_requests_total"][1]
    assert rejected == {(("code", "PAYLOAD_TOO_LARGE"),): 2, (("code", "AUTH_REQUIRED"),): 1}


def test_pretty_logs_to_a_file_have_no_colour_codes(tmp_path):
    """LOG_PRETTY=1 with stderr to a file (not a terminal): readable lines, no ANSI escape codes."""
    with server_process(tmp_path, "--no-feeder", env={"LOG_PRETTY": "1"}) as sp:
        assert httpx.get(sp.base_url + "/api/v1/symbols").status_code == 200
    log = sp.log()
    assert "listening" in log and "engine_running" in log
    assert "\x1b[" not in log, log[:2000]
