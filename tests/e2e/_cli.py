"""Running the `candlewick` command as a user does (also on a terminal), and reading the log lines and help it writes."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT


def candlewick(*args: str, env: dict[str, str] | None = None, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """``python -m candlewick ARGS`` in a child process, its output captured; raises if it outlives ``timeout``."""
    return subprocess.run([sys.executable, "-m", "candlewick", *args], env={**os.environ, **(env or {})}, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def on_terminal(*args: str, env: dict[str, str] | None = None, timeout: float = 20.0) -> tuple[int, str]:
    """``python -m candlewick ARGS`` with stderr a terminal (a pseudo-terminal): its exit code and all it
    wrote there, read until it closes the terminal; fails if that takes over ``timeout`` seconds."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "candlewick", *args], env={**os.environ, **(env or {})},
                            stderr=follower, cwd=ROOT)
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while True:  # read until the child closes the terminal (EOF, or EIO on Linux)
            ready, _, _ = select.select([leader], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"candlewick {args[0]} did not finish in time: {seen[-2000:]!r}"
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        code = proc.wait(timeout=10)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, seen.decode()


def interrupt_when(args: list[str], err_path, pattern: str, *, deadline: float, wait: float,
                   env: dict[str, str] | None = None) -> int:
    """Run ``args`` with stderr to ``err_path``, send SIGINT once ``pattern`` shows in it (polling the
    child's output, failing past ``deadline`` seconds or if it ends first), and return its exit code;
    it is killed if it outlives the test's wait."""
    with open(err_path, "wb") as sink:
        proc = subprocess.Popen(args, env=env, stderr=sink, cwd=ROOT)
        try:
            end = time.monotonic() + deadline
            while not re.search(pattern, err_path.read_text()):
                assert proc.poll() is None and time.monotonic() < end, err_path.read_text()[-2000:]
                time.sleep(0.02)  # polling a child's output for a condition, with a deadline
            proc.send_signal(signal.SIGINT)
            return proc.wait(timeout=wait)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def log_lines(stderr: str) -> list[dict]:
    """Every line of ``stderr`` as a JSON log line (fails on anything else: a traceback, a stray print)."""
    lines = []
    for line in stderr.splitlines():
        assert line.startswith("{"), f"not a log line: {line!r}\n{stderr[-2000:]}"
        lines.append(json.loads(line))
    return lines


def events(stderr: str) -> list[str]:
    """The ``event`` of each log line of ``stderr``."""
    return [line["event"] for line in log_lines(stderr)]


def only_line(stderr: str) -> dict:
    """The one log line ``stderr`` holds."""
    lines = log_lines(stderr)
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]


def options_without_help(help_text: str) -> list[str]:
    """Options in argparse's --help output with no help text (on their line, or on the next, indented)."""
    lines = help_text.splitlines()
    missing = []
    for i, line in enumerate(lines):
        m = re.match(r"  (-\S.*?)(?:\s{2,}(\S.*))?$", line)
        if m is None:
            continue
        follows = lines[i + 1] if i + 1 < len(lines) else ""
        if not m.group(2) and not re.match(r"\s{6,}[^\s-]", follows):
            missing.append(m.group(1))
    return missing
