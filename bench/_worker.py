"""Helper processes of the benchmark harness: ``Worker`` runs one and reads the JSON lines it prints."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time

from bench._results import ROOT, log


class Worker:
    """``python -m bench._load KIND JSON`` (a load worker), or with ``module``
    ``python -m MODULE _worker KIND JSON``, in its own process. It prints ``READY`` (optional),
    then one JSON line last. Always killed by ``close`` (the context manager)."""

    def __init__(self, kind: str, params: dict, module: str | None = None) -> None:
        self.kind = kind
        self.err = tempfile.TemporaryFile()
        argv = ["-m", module, "_worker", kind] if module else ["-m", "bench._load", kind]
        self.proc = subprocess.Popen([sys.executable, *argv, json.dumps(params)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err)
        self._lines: list[bytes] = []
        self._buf = b""

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _readline(self, timeout: float) -> bytes | None:
        """The next line of the worker's stdout; None on timeout, b"" at EOF."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                line, self._buf = self._buf, b""
                return line
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line + b"\n"

    def _next_line(self, deadline: float, what: str, timeout: float) -> bytes:
        """The next line of the worker's stdout, or RuntimeError if the worker exits or no line
        comes before the deadline (``what`` was awaited, ``timeout`` seconds in all)."""
        line = self._readline(max(0.0, deadline - time.monotonic()))
        if line is None:
            raise RuntimeError(f"worker {self.kind}: no {what} in {timeout:g} s: {self.stderr()}")
        if not line:
            raise RuntimeError(f"worker {self.kind} exited ({self.proc.wait()}) before {what}: {self.stderr()}")
        return line

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the worker prints ``READY`` (lines before it are kept for ``result``)."""
        deadline = time.monotonic() + timeout
        while (line := self._next_line(deadline, "READY", timeout)).strip() != b"READY":
            self._lines.append(line)

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def ask(self, line: str, timeout: float = 60.0) -> dict:
        """Send a command line; return the next JSON line the worker prints."""
        self.tell(line)
        deadline = time.monotonic() + timeout
        while True:
            got = self._next_line(deadline, f"answer to {line!r}", timeout)
            if got.lstrip().startswith(b"{"):
                return json.loads(got)

    def result(self, timeout: float = 120.0, echo_stderr: bool = False) -> dict:
        """The last JSON line, once the worker has exited; with ``echo_stderr`` what it wrote to
        stderr (its last 1,000 characters) is logged too."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise RuntimeError(f"worker {self.kind} did not finish in {timeout:g} s: {self.stderr()}") from None
        lines = [ln for ln in [*self._lines, *(self._buf + out).splitlines()] if ln.strip()]
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(f"worker {self.kind} failed ({self.proc.returncode}): {self.stderr()}")
        said = self.stderr().strip() if echo_stderr else ""
        if said:
            log(said[-1000:])
        return json.loads(lines[-1])

    def stderr(self) -> str:
        try:
            self.err.seek(0)
            return self.err.read().decode(errors="replace")[-3000:]
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                f.close()
        with contextlib.suppress(Exception):
            self.err.close()


def run_worker(kind: str, params: dict, timeout: float = 300.0, module: str | None = None,
               echo_stderr: bool = False) -> dict:
    """Run a ``Worker`` to its end; its last JSON line."""
    with Worker(kind, params, module) as w:
        return w.result(timeout, echo_stderr)

