"""Running the `candlewick` command as a user does, and reading the log lines it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT


def candlewick(*args: str, env: dict[str, str] | None = None, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """``python -m candlewick ARGS`` in a child process, its output captured; raises if it outlives ``timeout``."""
    return subprocess.run([sys.executable, "-m", "candlewick", *args], env={**os.environ, **(env or {})}, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def log_lines(stderr: str) -> list[dict]:
    """Every line of ``stderr`` as a JSON log line (fails on anything else: a traceback, a stray print)."""
    lines = []
    for line in stderr.splitlines():
        assert line.startswith("{"), f"not a log line: {line!r}\n{stderr[-2000:]}"
        lines.append(json.loads(line))
    return lines


def only_line(stderr: str) -> dict:
    """The one log line ``stderr`` holds."""
    lines = log_lines(stderr)
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]
