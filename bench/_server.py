"""The server under test: ``python -m candlewick run --no-feeder`` as a child process, and plain HTTP calls to it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench._results import ROOT, log

API_KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_post_json(url: str, body: dict, timeout: float = 30.0) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", "x-api-key": API_KEY})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class Server:
    """``python -m candlewick run --no-feeder [ARGS]`` on 127.0.0.1:<free port>, ready once
    /health/readiness answers 200. Use as a context manager, or ``start()`` then ``stop()``
    (SIGTERM, then SIGKILL). Its log is deleted after a clean stop unless ``keep_log`` or
    ``$BENCH_KEEP_LOGS``."""

    def __init__(self, *, database_url: str | None = None, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), ready_timeout: float = 60.0, keep_log: bool = False,
                 ceiling: bool = False) -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self.base = f"http://{self.host}:{self.port}"
        self.database_url = database_url
        self.extra_env = env or {}
        self.args = args
        self.ready_timeout = ready_timeout
        self.keep_log = keep_log
        self.ceiling = ceiling
        """Serve ``bench._ceiling`` (parse-only quart-trio endpoint) instead of Candlewick."""
        self.proc: subprocess.Popen | None = None
        self.log_path: str | None = None

    def start(self) -> Server:
        fd, self.log_path = tempfile.mkstemp(prefix="cw-bench-server-", suffix=".log")
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PORT", "HOST")}
        env.update({"API_KEYS": API_KEY, "FEEDER": "0", **self.extra_env})
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        with os.fdopen(fd, "wb") as logf:
            command = ["bench._ceiling"] if self.ceiling else ["candlewick", "run", "--no-feeder"]
            self.proc = subprocess.Popen([sys.executable, "-m", *command, "--host", self.host, "--port",
                                          str(self.port), *self.args], cwd=ROOT, env=env,
                                         stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode} at start:\n{self.log_tail()}")
            try:
                if http_get(self.base + "/health/readiness", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {self.ready_timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return Path(self.log_path or "").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                log(f"server pid {proc.pid} ignored SIGTERM for 20 s; killing it")
                proc.kill()
                proc.wait()
        elif proc.returncode not in (0, -signal.SIGTERM):
            log(f"server exited {proc.returncode}; log {self.log_path}:\n{self.log_tail(1500)}")
        clean = proc.returncode in (0, -signal.SIGTERM)
        if self.log_path and clean and not (self.keep_log or os.environ.get("BENCH_KEEP_LOGS")):
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)

    # -- what the API reports -------------------------------------------------------------------
    def get_json(self, path: str):
        status, body = http_get(self.base + path)
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}: {body[:300]!r}")
        return json.loads(body)

    def post_ticks(self, items: list[dict]) -> dict:
        status, body = http_post_json(self.base + "/api/v1/webhooks/ticks", {"source": "bench", "items": items})
        if status != 202:
            raise RuntimeError(f"POST ticks -> {status}: {body}")
        return body

    def flusher(self) -> dict:
        """The flusher figures, summed over its lanes ("flusher" or "flusher:<i>"), and the lanes."""
        tree = self.get_json("/ops/health/supervisor")
        lanes = [c for c in tree["children"] if c["name"].split(":")[0] == "flusher"]
        out = {k: sum(c.get(k, 0) for c in lanes) for k in ("flushes", "ticksWritten", "failures")}
        out["lanes"] = len(lanes)
        return out

    def counts(self, symbols: list[str]) -> dict:
        """Applied ticks as the API reports them: committed by the flushers
        (``/ops/health/supervisor`` ticksWritten), accepted (Prometheus ``candlewick_ticks``),
        and the sum of the 1-minute candles' ``count`` over the given symbols (the store's view)."""
        written = self.flusher()["ticksWritten"]
        status, prom = http_get(self.base + "/ops/metrics")
        accepted = None
        for line in prom.decode().splitlines():
            if line.startswith("candlewick_ticks_total{") and 'outcome="accepted"' in line:
                accepted = int(float(line.rsplit(" ", 1)[1]))
        candles = 0
        for sym in symbols:
            status, body = http_get(f"{self.base}/api/v1/ticks/{sym}/history?view=ohlc1m&limit=2000")
            if status == 200:
                candles += sum(item["count"] for item in json.loads(body)["items"])
        return {"ticks_written": written, "accepted_metric": accepted, "candle_count": candles}
