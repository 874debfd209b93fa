"""Item 3: write paths refuse without a key alike, compare keys in constant time, and never log a key.

- Every write path (the operations of the served OpenAPI document that declare the ``apiKey``
  security scheme) answers a missing key and every kind of wrong key (empty, a prefix, a suffix,
  another case, another length, non-ASCII bytes, a valid key twice in one header) with the
  same status, the same headers and byte-identical 401 bodies, whatever the body sent with it.
- The comparison is constant-time: ``hmac.compare_digest`` is wrapped to count its calls on a
  server with three keys; every request, whether its key is missing, wrong, or the first, second
  or third key, makes exactly three comparisons, each of two 32-byte digests (no early exit, no
  comparison whose duration depends on the length or prefix of what the client sent).
- The key never appears in logs: a server child process gets requests with the good key and
  with wrong ones, on every path and several error paths, and is stopped; its whole output is
  searched. With no ``API_KEYS``, ``candlewick run`` logs its generated key exactly once by
  design (README, ``api_key_generated``): that one startup line is the only place it appears.
"""

from __future__ import annotations

import hmac
import json
import time

import httpx
import pytest

from tests.conftest import API_KEY, server_process, start_live_server

# per response, not per key: "connection: close" says whether the body had arrived when the 401 was sent
VOLATILE = {"x-request-id", "date", "connection"}


def write_paths(doc: dict) -> list[str]:
    paths = [path for path, item in doc["paths"].items() for op in item.values()
             if any("apiKey" in req for req in op.get("security", []))]
    assert paths, "the OpenAPI document declares no write path"
    return paths


def bodies(path: str) -> list[bytes]:
    good = (b'{"source":"t","items":[{"symbol":"AUTH","price":1.5,"ts":%d}]}' % int(time.time())
            if path.endswith("/ticks") else b'{"items":[{"symbol":"AUTH","base":"A","quote":"B"}]}')
    return [good, b"", b"{not json", b'{"items": []}', b"x" * (5 * 1024 * 1024)]


WRONG_KEYS = ["", "wrong", API_KEY[:-1], API_KEY + "x", API_KEY.upper(), "x" + API_KEY, API_KEY * 2, "x" * 4096,
              f"{API_KEY}, {API_KEY}", f"{API_KEY},{API_KEY}", API_KEY[:-1].encode() + "\u00e9".encode()]


def test_missing_and_wrong_keys_get_byte_identical_401s(tmp_path, figure):
    """Missing key and every wrong key, on every write path, with any body: one identical 401."""
    with server_process(tmp_path, "--no-feeder") as sp, httpx.Client(base_url=sp.base_url, timeout=30) as c:
        paths = write_paths(c.get("/api/v1/openapi.json").json())
        answers = []
        for path in paths:
            for body in bodies(path):
                for key in [None, *WRONG_KEYS]:
                    headers = {"content-type": "application/json"}
                    if key is not None:
                        headers["x-api-key"] = key
                    r = c.post(path, content=body, headers=headers)
                    answers.append((path, key, len(body), r))
            # the good key passes on the same path (so a 401 above is about the key)
            r = c.post(path, content=bodies(path)[0], headers={"x-api-key": API_KEY})
            assert r.status_code == 202, r.text
            r = c.post(path, content=bodies(path)[0], headers={"X-API-KEY": API_KEY})
            assert r.status_code == 202, "header names are case-insensitive"
    statuses = {r.status_code for *_, r in answers}
    distinct_bodies = {r.content for *_, r in answers}
    distinct_headers = {tuple(sorted((k, v) for k, v in r.headers.items() if k not in VOLATILE))
                        for *_, r in answers}
    figure(f"{len(answers)} refused write requests on {len(paths)} write paths: statuses {sorted(statuses)}, "
           f"{len(distinct_bodies)} distinct body, {len(distinct_headers)} distinct header set",
           value=len(distinct_bodies), requests=len(answers), paths=paths)
    assert statuses == {401}, [(p, k, n, r.status_code) for p, k, n, r in answers if r.status_code != 401][:10]
    assert len(distinct_bodies) == 1, distinct_bodies
    assert len(distinct_headers) == 1, distinct_headers
    assert json.loads(distinct_bodies.pop()) == {
        "error": {"code": "AUTH_REQUIRED", "message": "missing or invalid x-api-key header"}}


async def test_key_comparison_is_constant_time(nursery, monkeypatch, figure):
    """Every request compares a fixed-length digest with every configured key through hmac.compare_digest."""
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    keys = ("first-key-0123456789", "second-key-abcdefghij", "third-key-short")
    live = await start_live_server(nursery, api_keys=keys)
    try:
        doc = (await live.client.get(live.url("/api/v1/openapi.json"))).json()
        per_request = []
        for path in write_paths(doc):
            body = bodies(path)[0]
            for key in [None, "", "wrong", keys[0][:5], keys[2] + "x", "x" * 10_000, *keys]:
                headers = {} if key is None else {"x-api-key": key}
                before = len(calls)
                r = await live.client.post(live.url(path), content=body, headers=headers)
                assert r.status_code == (202 if key in keys else 401), (key, r.text)
                per_request.append(calls[before:])
    finally:
        await live.client.aclose()
        live.running.stop()
    figure(f"{len(per_request)} write requests: {sorted({len(c) for c in per_request})} compare_digest calls each "
           f"(keys configured: {len(keys)}), operand lengths {sorted({n for c in per_request for p in c for n in p})}",
           value=len(per_request), calls_per_request=len(keys))
    assert all(len(c) == len(keys) for c in per_request), [len(c) for c in per_request]
    assert {n for c in per_request for pair in c for n in pair} == {32}, "digests of fixed length are compared"


SECRET = "s3cret-key-ZQX-0123456789abcdef"
GUESSES = ["guess-key-WRONG-9876543210", SECRET[:-1], SECRET.upper()]


def _exercise(base_url: str, key: str) -> None:
    """Requests with the good key and with wrong ones, on every write path and on error paths."""
    with httpx.Client(base_url=base_url, timeout=30) as c:
        now = time.time()
        for k in [key, *GUESSES]:
            h = {"x-api-key": k}
            c.post("/api/v1/webhooks/ticks", headers=h,
                   json={"source": "t", "items": [{"symbol": "LOG", "price": 1.5, "ts": now}]})
            c.post("/api/v1/webhooks/ticks", headers=h, content=b"{broken")
            c.post("/api/v1/webhooks/ticks", headers=h, json={"source": "t", "items": [{"symbol": "LOG", "price": -1}]})
            c.post("/api/v1/webhooks/symbols", headers=h, json={"items": [{"symbol": "LOG"}]})
            c.post("/api/v1/webhooks/ticks", headers=h, content=b"x" * (5 * 1024 * 1024))
            c.get("/api/v1/ticks/LOG", headers=h)
            c.get("/api/v1/nowhere", headers=h)
            c.delete("/api/v1/webhooks/ticks", headers=h)
            c.get("/api/v1/ticks/LOG/history?limit=abc", headers=h)
        for path in ("/ops/metrics", "/ops/health/supervisor", "/health/readiness", "/api/v1/openapi.json"):
            assert key not in c.get(path).text, f"{path} shows the key"


@pytest.mark.parametrize("pretty", [False, True], ids=["json-logs", "pretty-logs"])
def test_configured_key_never_logged(tmp_path, pretty, figure):
    """With API_KEYS set, neither the key nor a wrong key a client tried appears anywhere in the output."""
    env = {"API_KEYS": f"other-key-1111111111,{SECRET}", "LOG_PRETTY": "1" if pretty else "0"}
    with server_process(tmp_path, "--no-feeder", env=env) as sp:
        _exercise(sp.base_url, SECRET)
    log = sp.log()  # after SIGTERM: the shutdown lines are in it too
    assert sp.proc.returncode == 0, log[-3000:]
    assert "listening" in log  # the log was captured at all
    found = [s for s in [SECRET, *GUESSES] if s in log]
    figure(f"{'pretty' if pretty else 'JSON'} logs, {len(log.splitlines())} lines: "
           f"configured or tried keys found {len(found)} times", value=len(found))
    assert not found, f"keys in the log: {found}\n{log[-3000:]}"


def test_generated_key_logged_only_at_startup(tmp_path, figure):
    """Without API_KEYS the generated key appears once, in the api_key_generated line, and nowhere else."""
    with server_process(tmp_path, "--no-feeder", env={"API_KEYS": "", "LOG_PRETTY": "0"}) as sp:
        lines = [json.loads(x) for x in sp.log().splitlines() if x.startswith("{")]
        generated = [x["api_key"] for x in lines if x.get("event") == "api_key_generated"]
        assert len(generated) == 1, sp.log()
        key = generated[0]
        _exercise(sp.base_url, key)
    log = sp.log()
    holding = [line for line in log.splitlines() if key in line]
    figure(f"generated key: in {len(holding)} log line(s) of {len(log.splitlines())}", value=len(holding))
    assert len(holding) == 1 and json.loads(holding[0])["event"] == "api_key_generated", holding
    assert log.count(key) == 1
