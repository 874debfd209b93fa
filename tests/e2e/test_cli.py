"""The command line as a newcomer uses it: `candlewick run` in a child process, `feed`, the README."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.conftest import API_KEY, ROOT, server_process

README = (ROOT / "README.md").read_text()


def readme_block(marker: str) -> str:
    m = re.search(rf"<!-- readme:{marker} -->\s*```sh\n(.*?)\n```", README, re.S)
    assert m, f"README has no {marker} block"
    return m.group(1).strip()


def test_ci_runs_the_readme_test_command():
    """.ci/run calls exactly the test command the README gives newcomers."""
    assert readme_block("test") in (ROOT / ".ci" / "run").read_text()
    assert "candlewick run" in readme_block("run")


def test_run_generates_and_logs_a_key_once_when_none_configured(tmp_path):
    """Without API_KEYS a random key is generated, logged once, and it works on the write path."""
    with server_process(tmp_path, "--no-feeder", env={"API_KEYS": ""}) as sp:
        lines = [json.loads(x) for x in sp.log().splitlines() if x.startswith("{")]
        keys = [x["api_key"] for x in lines if x.get("event") == "api_key_generated"]
        assert len(keys) == 1 and len(keys[0]) >= 24
        body = {"source": "t", "items": [{"symbol": "K", "price": 1, "ts": time.time()}]}
        assert httpx.post(sp.base_url + "/api/v1/webhooks/ticks", json=body,
                          headers={"x-api-key": keys[0]}).status_code == 202
        assert httpx.post(sp.base_url + "/api/v1/webhooks/ticks", json=body,
                          headers={"x-api-key": "guess"}).status_code == 401
    assert sp.log().count(keys[0]) == 1


def test_sigterm_under_load_drains_and_exits_zero(tmp_path):
    """SIGTERM while clients post: every request gets an answer, the engine drains, exit code 0."""
    with server_process(tmp_path, "--no-feeder") as sp:
        statuses: list[int] = []
        stop = threading.Event()

        def client(n):
            with httpx.Client(timeout=10) as c:
                i = 0
                while not stop.is_set():
                    items = [{"symbol": f"S{n}", "price": 1 + j, "ts": time.time(), "idempotencyKey": f"{n}-{i}-{j}"}
                             for j in range(200)]
                    try:
                        r = c.post(sp.base_url + "/api/v1/webhooks/ticks", json={"source": "t", "items": items},
                                   headers={"x-api-key": API_KEY})
                        statuses.append(r.status_code)
                    except httpx.TransportError:
                        return  # the server has closed its listener
                    i += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(statuses) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        sp.proc.send_signal(signal.SIGTERM)
        code = sp.proc.wait(timeout=20)
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert code == 0, sp.log()
    assert len(statuses) >= 20 and set(statuses) <= {202, 503}
    log = sp.log()
    assert '"shutdown_requested"' in log and '"engine_stopped"' in log


def test_feed_command_posts_ticks_that_arrive(tmp_path):
    """`candlewick feed` posts synthetic ticks with keys; all of them are applied."""
    with server_process(tmp_path, "--no-feeder") as sp:
        out = subprocess.run([sys.executable, "-m", "candlewick", "feed", "--url",
                              sp.base_url + "/api/v1/webhooks/ticks", "--api-key", API_KEY, "--rate", "2000",
                              "--total", "600", "--symbols", "AAA,BBB"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        done = [json.loads(x) for x in out.stderr.splitlines() if '"feed_done"' in x][0]
        assert (done["posted"], done["accepted"], done["duplicates"]) == (600, 600, 0)
        metrics = httpx.get(sp.base_url + "/ops/metrics").text
        assert 'candlewick_ticks_total{outcome="accepted"} 600.0' in metrics


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_tour_commands_work(tmp_path):
    """Every curl command of the README's tour runs against a live server and succeeds."""
    tour = README.split("## A short tour", 1)[1].split("## Configuration", 1)[0]
    block = re.search(r"```sh\n(.*?)\n```", tour, re.S).group(1)
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        if line.startswith("curl"):
            commands.append(line)
    assert len(commands) >= 8
    with server_process(tmp_path, "--feeder", env={"API_KEYS": "demo-key"}) as sp:
        deadline = time.monotonic() + 10
        while httpx.get(sp.base_url + "/api/v1/ticks/BTCUSDT").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for cmd in commands:
            cmd = cmd.replace("http://127.0.0.1:8000", sp.base_url).replace("curl -N", "curl -N -m 1")
            out = subprocess.run(["bash", "-c", cmd + " -w '\\n%{http_code}'"], capture_output=True, text=True,
                                 timeout=30)
            status = out.stdout.strip().splitlines()[-1]
            assert status in ("200", "202"), (cmd, out.stdout[-500:], out.stderr)
