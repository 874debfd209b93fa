"""Item 1: schemathesis fuzzes every operation of Candlewick's own OpenAPI document.

A real server runs as a child process on loopback; the schemathesis command line runs against
``/api/v1/openapi.json`` with its default phases (examples, coverage, fuzzing, stateful) and
default checks, positive and negative data, and the API key on every request, so the write
paths are exercised past authentication (its ``ignored_auth`` check still sends requests
without the key). Its NDJSON event log is read back for the figure: operations, test cases per
operation, failures, errors. Every finding is fixed in the server (or in the document where it
described the server wrongly), never by switching a check off.

One constraint of the contract cannot be written in JSON Schema: a tick's ``ts`` may be at most
5 minutes ahead of the server's clock (and not before 1970). The ``map_case`` hook below keeps
*positive* cases' timestamps inside that window (the number or the date-time's year is moved
into the past); negative cases are left as generated. Schemathesis imports this module as its
hooks module (``SCHEMATHESIS_HOOKS``) in its own process.

Quick: ``-n 100`` (at least 100 test cases for every operation whose input space allows it;
an operation without parameters or body has one possible request, so schemathesis sends it once
per phase). Full: ``-n 1000``. The seed is fixed in quick mode (CI is reproducible), random in
full mode, and always printed; ``CANDLEWICK_FUZZ_SEED`` overrides it.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import schemathesis

from tests.conftest import API_KEY, ROOT, server_process

QUICK_SEED = 7


# -- schemathesis hook (runs inside the schemathesis process) --------------------------------------
def _in_the_past(ts):
    """A positive ``ts`` moved into [1970, now): numbers by modulo, date-times by their year."""
    now = time.time() - 86_400
    if isinstance(ts, bool):
        return ts
    if isinstance(ts, (int, float)):
        return ts % now if ts >= now else ts
    if isinstance(ts, str):
        m = re.match(r"^(\d{4})", ts)
        if m and not 1971 <= int(m.group(1)) <= 2020:
            return f"{1972 + 4 * (int(m.group(1)) % 12)}{ts[4:]}"  # a leap year: Feb 29 stays a date
    return ts


def map_case(context, case):
    meta = case.meta
    if (case.operation.path == "/api/v1/webhooks/ticks" and meta is not None and meta.generation.mode.is_positive
            and isinstance(case.body, dict) and isinstance(case.body.get("items"), list)):
        for item in case.body["items"]:
            if isinstance(item, dict) and "ts" in item:
                item["ts"] = _in_the_past(item["ts"])
    return case


if os.environ.get("SCHEMATHESIS_HOOKS") == __name__:  # only in the schemathesis process, not in pytest's
    schemathesis.hook(map_case)


# -- the test ---------------------------------------------------------------------------------------
def _read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_schemathesis_finds_nothing(tmp_path, size, figure):
    """Every operation, positive and negative data, all default checks: 0 failures, 0 errors."""
    examples = size.pick(quick=100, full=1000)
    seed = int(os.environ.get("CANDLEWICK_FUZZ_SEED") or (QUICK_SEED if not size.full else random.randrange(2**31)))
    config = tmp_path / "schemathesis.toml"
    # An SSE stream never ends: read its first event (the hello), then validate what was read.
    # 413 (body over the 4 MiB limit, documented for both write paths) is a rejection too: the
    # check's default list of rejection statuses lacks it, so an invalid body of 10,001 items was
    # counted as "accepted" when the server refused it for its size.
    config.write_text("max-stream-events = 1\nrequest-timeout = 10\ncontinue-on-failure = true\n\n"
                      "[checks.negative_data_rejection]\nexpected-statuses = [400, 401, 403, 404, 405, 406, "
                      "409, 413, 415, 422, 428, 429, \"5xx\"]\n")
    report = tmp_path / "events.ndjson"
    with server_process(tmp_path, "--no-feeder") as sp:
        served = httpx.get(sp.base_url + "/api/v1/openapi.json")
        doc = served.json()
        # Loaded by URL, schemathesis leaves out the operation that serves the document; given the
        # same bytes as a file, it tests that one too.
        (tmp_path / "openapi.json").write_bytes(served.content)
        operations = {f"{method.upper()} {path}" for path, item in doc["paths"].items() for method in item}
        t0 = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()",
             "--config-file", str(config), "run", str(tmp_path / "openapi.json"), "--url", sp.base_url,
             "-H", f"x-api-key: {API_KEY}", "--max-examples", str(examples), "--seed", str(seed),
             "--workers", "1", "--report", "ndjson", "--report-ndjson-path", str(report), "--no-color"],
            cwd=tmp_path, env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.reliability.test_fuzz_api",
                               "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, timeout=size.pick(quick=600, full=7200))
        elapsed = time.monotonic() - t0
        assert sp.proc.poll() is None, f"the server died under the fuzzer:\n{sp.log()[-4000:]}"
        server_log = sp.log()
    output = run.stdout + run.stderr
    assert report.exists(), f"schemathesis wrote no report (exit {run.returncode}):\n{output[-6000:]}"

    cases: Counter[str] = Counter()
    failures: dict[tuple[str, str], str] = {}
    checks_run: set[str] = set()
    errors: list[str] = []
    for event in _read_events(report):
        (kind, body), = event.items()
        if kind == "ScenarioFinished":
            rec = body["recorder"]
            label = rec.get("label", "?")
            cases[label] += len(rec.get("cases", {}))
            for results in rec.get("checks", {}).values():
                for check in results:
                    checks_run.add(check["name"])
                    if check["status"] == "failure":
                        f = check["failure_info"]["failure"]
                        failures.setdefault((f.get("operation") or label, f["code"]), f["title"] + ": " + f["message"])
        elif kind == "NonFatalError":
            errors.append(f"{body.get('label')}: {body['value']['type']}: {body['value']['message']}")
        elif kind == "FatalError":
            errors.append(f"fatal: {body}")

    tested = {label for label in cases if cases[label]}
    with_inputs = {f"{m.upper()} {p}" for p, item in doc["paths"].items() for m, op in item.items()
                   if op.get("parameters") or op.get("requestBody")}
    thin = {label: cases[label] for label in with_inputs if cases[label] < examples}
    server_errors = sum(1 for (_, code) in failures if code == "ST101")  # not_a_server_error
    schema_violations = sum(1 for (_, code) in failures if code == "ST108")
    figure(f"{len(tested)}/{len(operations)} operations, {sum(cases.values())} test cases "
           f"(min {min(cases[o] for o in with_inputs)} per operation with inputs), {len(failures)} failures "
           f"({server_errors} server errors, {schema_violations} schema violations), {len(errors)} errors, "
           f"seed {seed}, {elapsed:.0f} s",
           value=len(failures) + len(errors), operations=len(operations), cases=sum(cases.values()),
           per_operation=dict(cases), failures=len(failures), errors=len(errors), seed=seed,
           checks=sorted(checks_run), seconds=round(elapsed, 1))

    detail = "\n\n".join(f"{op} {code}: {msg}" for (op, code), msg in failures.items())
    assert not failures and not errors, (f"schemathesis (seed {seed}) found {len(failures)} failures and "
                                        f"{len(errors)} errors:\n{detail}\n{chr(10).join(errors)}\n\n"
                                        f"{output[-8000:]}")
    assert tested == operations, f"operations not tested: {sorted(operations - tested)}"
    assert not thin, f"fewer than {examples} test cases for {thin}"
    assert {"not_a_server_error", "status_code_conformance", "content_type_conformance",
            "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
            "positive_data_acceptance", "unsupported_method"} <= checks_run, sorted(checks_run)
    assert run.returncode == 0, output[-8000:]
    assert '"level": "error"' not in server_log, server_log[-4000:]
