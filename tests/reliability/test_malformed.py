"""Item 2: malformed request bodies get a 4xx JSON error envelope and leave memory where it was.

Generated bodies for both write paths (``POST /api/v1/webhooks/ticks`` and ``/symbols``), every
one invalid by construction: bad JSON (truncated, a structural character replaced, single
quotes, trailing commas, comments, a BOM), wrong types in every field, huge numbers (overflowing
a double, thousands of digits, timestamps far in the future), ``NaN``/``Infinity`` literals,
deeply nested arrays and objects, invalid UTF-8 and lone surrogates, extra fields (together with
one real defect: extra fields alone are allowed by the contract), missing fields, values out of
range, 10 MB bodies (declared, and chunked without a length), and bodies dribbled a few bytes at
a time. Each answer must be a 4xx with ``Content-Type: application/json`` and exactly the
envelope of docs/API.md: ``{"error": {"code": "UPPER_SNAKE", "message": "...", "details"?: [...]}}``.

The server runs as a child process; its resident memory (``VmRSS`` of ``/proc/<pid>/status``)
is read after a warm-up pass (which already includes every kind of body, so allocator arenas and
caches have grown once) and again after the measured pass: it must be within 10%.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

import attrs
import httpx
import orjson
import trio

from tests.conftest import API_KEY, server_process

TICKS = "/api/v1/webhooks/ticks"
SYMBOLS = "/api/v1/webhooks/symbols"
CODE_RE = re.compile(r"[A-Z][A-Z_]*")
TEN_MB = 10 * 1024 * 1024


@attrs.frozen
class Case:
    kind: str
    """Which family of defect (the figure counts them)."""
    path: str
    body: bytes
    send: str = "plain"
    """plain (Content-Length), chunked (no length), dribble (raw socket, a few bytes at a time)."""
    key: str = API_KEY


# -- generation -------------------------------------------------------------------------------------
def _item(rng: random.Random, now: float) -> dict:
    return {"symbol": rng.choice(["BTCUSDT", "ETH-USD", "a.b/c:d_e"]), "price": round(rng.uniform(1, 1e5), 2),
            "ts": round(now - rng.uniform(1, 3000), 3), "volume": round(rng.uniform(0, 10), 3)}


def _ticks(rng: random.Random, now: float, n: int | None = None) -> dict:
    return {"source": "fuzz", "items": [_item(rng, now) for _ in range(n or rng.randint(1, 5))]}


def _bad_json(rng: random.Random, now: float) -> bytes:
    text = orjson.dumps(_ticks(rng, now))
    structural = [i for i, c in enumerate(text) if c in b"{}[]:,"]
    choice = rng.randrange(8)
    if choice == 0:
        return text[: rng.randrange(len(text))]  # a strict prefix of an object is never JSON
    if choice == 1:
        i = rng.choice(structural)
        return text[:i] + rng.choice([b"#", b";", b"=", b"@"]) + text[i + 1:]
    if choice == 2:
        return text.replace(b'"', b"'")
    if choice == 3:
        return text[:-2] + b",]}"  # trailing comma
    if choice == 4:
        return b"/* comment */" + text
    if choice == 5:
        return b"\xef\xbb\xbf" + text  # a byte order mark
    if choice == 6:
        return re.sub(rb'"(source|items)":', rb"\1:", text)  # unquoted keys
    return rng.choice([b"", b" ", b"{", b"}", b"undefined", b"{'a': 1}", b"[1,,2]", b"\x00", b'{"items": [}'])


WRONG_TYPES = {
    "source": [None, 1, 1.5, True, [], {}, ""],
    "items": [None, 1, "items", True, {}, []],
    "symbol": [None, 1, 1.5, True, [], {}, "", "x" * 33, "BTC USD", "Ä", "a\nb"],
    "price": [None, "100", True, [], {}, 0, -1, -1e-300],
    "ts": [None, True, [], {}, "yesterday", "2024-13-01T00:00:00Z", "2024-11-01T01:40:00", -1, 1e11 + 5e10, 4e9],
    "volume": ["1", True, [], {}, -0.5, -1e300],
    "idempotencyKey": [1, 1.5, True, [], {}, "", "k" * 201],
}


def _wrong_type(rng: random.Random, now: float) -> bytes:
    doc = _ticks(rng, now)
    field = rng.choice(list(WRONG_TYPES))
    value = rng.choice(WRONG_TYPES[field])
    if field in ("source", "items"):
        doc[field] = value
    else:
        doc["items"][rng.randrange(len(doc["items"]))][field] = value
    if rng.random() < 0.2 and isinstance(doc["items"], list):
        doc["items"].append(rng.choice([1, "tick", None, [], True]))  # an item that is not an object
    return orjson.dumps(doc)


def _huge_number(rng: random.Random, now: float) -> bytes:
    field = rng.choice(["price", "volume", "ts"])
    literal = rng.choice([b"1e400", b"-1e999", b"9" * rng.randint(310, 5000), b"1" + b"0" * rng.randint(400, 2000),
                          b"-" + b"9" * 400 + b".5", b"1.7976931348623159e308"])
    if field == "ts" and rng.random() < 0.5:
        literal = rng.choice([b"1e20", b"10000000000000000000000000000000", b"253402300800", b"1e15"])
    text = orjson.dumps(_ticks(rng, now, 1)).decode()
    return re.sub(rf'"{field}":[^,}}]+', f'"{field}":{literal.decode()}', text).encode()


def _nan_literal(rng: random.Random, now: float) -> bytes:
    field = rng.choice(["price", "volume", "ts"])
    literal = rng.choice(["NaN", "Infinity", "-Infinity", "nan", "inf", "-inf", "+1", "0x10", "01", ".5", "1."])
    text = orjson.dumps(_ticks(rng, now, rng.randint(1, 3))).decode()
    return re.sub(rf'"{field}":[^,}}]+', f'"{field}":{literal}', text, count=1).encode()


def _nested(rng: random.Random, now: float) -> bytes:
    depth = rng.choice([rng.randint(2, 1000), rng.randint(1020, 1030), rng.randint(5_000, 200_000)])
    where = rng.randrange(3)
    if where == 0:
        return b'{"source":"s","items":' + b"[" * depth + b"]" * depth + b"}"
    if where == 1:
        inner = b'{"a":' * depth + b"1" + b"}" * depth
        return b'{"source":"s","items":[{"symbol":"X","ts":1,"price":' + inner + b"}]}"
    return b"[" * depth + b"]" * depth


INVALID_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                b"\xf8\x88\x80\x80\x80", b"\\ud800", b"\\udfff", b"\\ud800\\u0041"]


def _bad_utf8(rng: random.Random, now: float) -> bytes:
    text = orjson.dumps(_ticks(rng, now, 1))
    junk = rng.choice(INVALID_UTF8)
    anchor = rng.choice([b'"fuzz', b'"symbol":"', b'"source'])
    i = text.index(anchor) + len(anchor)
    return text[:i] + junk + text[i:]


DEFECTS = [("items", []), ("items", None), ("source", None), ("price", None), ("ts", None), ("symbol", None),
           ("price", -5), ("ts", -1)]


def _extra_fields(rng: random.Random, now: float) -> bytes:
    doc = _ticks(rng, now)
    for _ in range(rng.randint(1, 20)):
        doc[f"x{rng.randrange(10**6)}"] = rng.choice([1, "extra", None, [1, 2], {"nested": True}])
        doc["items"][0][f"y{rng.randrange(10**6)}"] = rng.choice([1, "extra", None, [], {}])
    field, value = rng.choice(DEFECTS)  # extra fields are allowed; this one defect is not
    if field in ("items", "source"):
        if value is None:
            del doc[field]
        else:
            doc[field] = value
    elif value is None:
        del doc["items"][0][field]
    else:
        doc["items"][0][field] = value
    return orjson.dumps(doc)


def _out_of_range(rng: random.Random, now: float) -> bytes:
    doc = _ticks(rng, now)
    choice = rng.randrange(7)
    item = doc["items"][0]
    if choice == 0:
        doc["items"] = [_item(rng, now)] * 10_001
    elif choice == 1:
        item["ts"] = now + rng.uniform(400, 1e6)  # more than 5 minutes ahead
    elif choice == 2:
        item["ts"] = (now - 10) * 1000  # milliseconds by mistake
    elif choice == 3:
        item["ts"] = rng.choice(["2999-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2024-02-30T00:00:00Z"])
    elif choice == 4:
        item["price"] = rng.choice([0, 0.0, -0.0])
    elif choice == 5:
        item["symbol"] = rng.choice(["", "A" * 33, "BTC USDT", "BTC\tUSDT", "€", "a;b"])
    else:
        item["idempotencyKey"] = "k" * rng.randint(201, 5000)
    return orjson.dumps(doc)


def _not_an_object(rng: random.Random, now: float) -> bytes:
    return rng.choice([b"[]", b"null", b"1", b'"ticks"', b"true", b"[{}]", orjson.dumps([_ticks(rng, now)])])


def _bad_symbols(rng: random.Random, now: float) -> bytes:
    choice = rng.randrange(6)
    good = {"symbol": "BTCUSDT", "base": "BTC", "quote": "USDT", "active": True}
    if choice == 0:
        return _bad_json(rng, now)
    if choice == 1:
        return orjson.dumps({"items": rng.choice([[], None, "x", {}, [good] * 10_001])})
    bad = dict(good)
    field, value = rng.choice([("symbol", ""), ("symbol", "A" * 33), ("symbol", 5), ("base", "B" * 33),
                               ("quote", 7), ("active", "yes"), ("active", None)])
    bad[field] = value
    items = [good] * rng.randint(0, 3) + [bad]
    if choice == 2:
        items.append(rng.choice([1, None, "s"]))
    return orjson.dumps({"items": items, f"extra{rng.randrange(100)}": 1})


FAMILIES: list[tuple[str, Callable[[random.Random, float], bytes], int]] = [
    ("bad_json", _bad_json, 14), ("wrong_type", _wrong_type, 20), ("huge_number", _huge_number, 10),
    ("nan_literal", _nan_literal, 8), ("nested", _nested, 6), ("invalid_utf8", _bad_utf8, 10),
    ("extra_fields", _extra_fields, 10), ("out_of_range", _out_of_range, 12), ("not_an_object", _not_an_object, 4),
    ("symbols", _bad_symbols, 6),
]


def generate(rng: random.Random, n: int, *, big: int, dribble: int) -> list[Case]:
    now = time.time()
    names = [f[0] for f in FAMILIES]
    makers = {f[0]: f[1] for f in FAMILIES}
    cases = []
    for name in rng.choices(names, weights=[f[2] for f in FAMILIES], k=n - big - dribble):
        body = makers[name](rng, now)
        path = SYMBOLS if name == "symbols" else TICKS
        if rng.random() < 0.02:
            cases.append(Case("wrong_key", path, body, key=rng.choice(["", "wrong", API_KEY + "x"])))
        else:
            cases.append(Case(name, path, body))
    for i in range(big):  # over the 4 MiB limit: 10 MB, a JSON array of ticks or plain filler
        filler = orjson.dumps(_ticks(rng, now, 1))[:-2] + b"," + b" " * TEN_MB + b"]}" if i % 2 else b"x" * TEN_MB
        cases.append(Case("ten_mb", rng.choice([TICKS, SYMBOLS]), filler, send="chunked" if i % 3 == 2 else "plain"))
    for _ in range(dribble):
        name = rng.choice(names[:-1])
        cases.append(Case("dribbled", TICKS, makers[name](rng, now)[:3000] or b"{", send="dribble"))
    rng.shuffle(cases)
    # the 10 MB bodies go first: warm-up and measured run then leave the heap in the same state
    # (many small requests after the large ones), so RSS compares like with like
    return sorted(cases, key=lambda c: c.kind != "ten_mb")


# -- sending ----------------------------------------------------------------------------------------
async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 256 * 1024):
        yield body[i:i + 256 * 1024]


async def _dribble(port: int, case: Case, rng: random.Random) -> tuple[int, dict[str, str], bytes]:
    """Headers at once, then the body a few bytes at a time (the client's pace, not a wait for the server)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        head = (f"POST {case.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"x-api-key: {case.key}\r\nContent-Length: {len(case.body)}\r\nConnection: close\r\n\r\n")
        await stream.send_all(head.encode())
        step = max(1, len(case.body) // 40)
        for i in range(0, len(case.body), step):
            await stream.send_all(case.body[i:i + step])
            await trio.sleep(rng.uniform(0.005, 0.03))
        data = b""
        with trio.fail_after(30):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def envelope_problem(status: int, headers, body: bytes) -> str | None:
    """Why this answer is not a 4xx JSON error envelope of docs/API.md (None if it is)."""
    if not 400 <= status < 500:
        return f"status {status}"
    if not headers.get("content-type", "").startswith("application/json"):
        return f"content-type {headers.get('content-type')!r}"
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"body is not JSON: {body[:200]!r}"
    if not isinstance(doc, dict) or set(doc) != {"error"} or not isinstance(doc["error"], dict):
        return f"not an envelope: {doc!r:.300}"
    err = doc["error"]
    if not set(err) <= {"code", "message", "details"} or not isinstance(err.get("message"), str) or \
            not isinstance(err.get("code"), str) or not CODE_RE.fullmatch(err["code"]):
        return f"bad error object: {err!r:.300}"
    details = err.get("details")
    if details is not None and not (isinstance(details, list) and details and all(
            isinstance(d, dict) and set(d) == {"path", "message"} for d in details)):
        return f"bad details: {details!r:.300}"
    return None


async def run_cases(base_url: str, port: int, cases: list[Case], seed: int) -> tuple[Counter, list[str]]:
    codes: Counter[str] = Counter()
    problems: list[str] = []
    limiter = trio.CapacityLimiter(12)
    rng = random.Random(seed)

    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        async def one(case: Case) -> None:
            if case.send == "dribble":  # its own connection, and not counted against the limiter
                status, headers, body = await _dribble(port, case, random.Random(rng.random()))
            else:
                async with limiter:
                    content = _chunks(case.body) if case.send == "chunked" else case.body
                    r = await client.post(case.path, content=content,
                                          headers={"x-api-key": case.key, "content-type": "application/json"})
                    status, headers, body = r.status_code, r.headers, r.content
            problem = envelope_problem(status, headers, body)
            if problem:
                problems.append(f"{case.kind} {case.send} {case.path} {case.body[:120]!r}...: {problem}")
            else:
                codes[f"{status} {orjson.loads(body)['error']['code']}"] += 1

        async with trio.open_nursery() as nursery:
            for case in cases:
                nursery.start_soon(one, case)
    return codes, problems


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


async def test_malformed_bodies_get_4xx_envelopes_and_memory_stays_flat(tmp_path, size, figure):
    """Every malformed body gets a 4xx JSON envelope; resident memory after the run is within 10% of before."""
    n = size.pick(quick=1_000, full=10_000)
    big = size.pick(quick=6, full=40)
    dribble = size.pick(quick=20, full=200)
    seed = 2024
    cases = generate(random.Random(seed), n, big=big, dribble=dribble)
    # the warm-up sends the same mix (another seed), so allocator arenas reach their working size first
    warmup = generate(random.Random(seed + 1), n, big=big, dribble=dribble)
    with server_process(tmp_path, "--no-feeder") as sp:
        port = int(sp.base_url.rsplit(":", 1)[1])
        codes, problems = await run_cases(sp.base_url, port, warmup, seed + 1)
        assert not problems, "\n".join(problems[:20])
        before = rss_kib(sp.proc.pid)
        t0 = time.monotonic()
        codes, problems = await run_cases(sp.base_url, port, cases, seed)
        elapsed = time.monotonic() - t0
        after = rss_kib(sp.proc.pid)
        # the server is still healthy and still accepts a good request
        r = httpx.post(sp.base_url + TICKS, headers={"x-api-key": API_KEY},
                       json={"source": "t", "items": [{"symbol": "OK", "price": 1.5, "ts": time.time()}]})
        assert r.status_code == 202, r.text
        log = sp.log()
    kinds = Counter(c.kind for c in cases)
    growth = (after - before) / before
    figure(f"{len(cases)} malformed bodies ({big} of 10 MB, {dribble} dribbled): {sum(codes.values())} 4xx envelopes, "
           f"{len(problems)} not; RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB ({growth:+.1%}), {elapsed:.1f} s",
           value=len(problems), bodies=len(cases), kinds=dict(kinds), codes=dict(codes),
           rss_before_kib=before, rss_after_kib=after, rss_growth=round(growth, 4), seconds=round(elapsed, 1))
    assert not problems, f"{len(problems)} answers were not 4xx envelopes:\n" + "\n".join(problems[:30])
    assert sum(codes.values()) == len(cases)
    assert growth <= 0.10, f"RSS grew {growth:.1%}: {before} KiB -> {after} KiB"
    assert "unhandled_error" not in log and '"level": "error"' not in log, log[-4000:]
