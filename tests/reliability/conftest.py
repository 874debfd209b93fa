"""Reliability suite (issue 7): each test attacks the system and records the figure it measured.

Size: ``CANDLEWICK_RELIABILITY=quick`` (default; what ``.ci/run`` runs) or ``full`` (what
``python -m bench soak`` runs). A test picks its numbers with ``size.pick(quick=..., full=...)``.

Figures: a test calls ``figure(name, value, **detail)``; at the end of the session every
figure is printed in the terminal summary and, when ``CANDLEWICK_RELIABILITY_OUT`` names a
file, written there as JSON (the soak command renders RELIABILITY.md from that file).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import attrs
import pytest

_FIGURES: list[dict] = []


@attrs.frozen
class Size:
    name: str

    @property
    def full(self) -> bool:
        return self.name == "full"

    def pick(self, *, quick, full):
        return full if self.full else quick


def _size() -> Size:
    name = os.environ.get("CANDLEWICK_RELIABILITY", "quick")
    if name not in ("quick", "full"):
        raise pytest.UsageError(f"CANDLEWICK_RELIABILITY must be quick or full, not {name!r}")
    return Size(name)


@pytest.fixture(scope="session")
def size() -> Size:
    return _size()


@pytest.fixture
def figure(request, size):
    """``figure("0 server errors in 3,400 requests", value=0, requests=3400)``."""
    def record(text: str, value=None, **detail) -> None:
        _FIGURES.append({"test": request.node.nodeid, "size": size.name, "figure": text, "value": value,
                         "detail": detail, "date": _dt.date.today().isoformat()})
    return record


def pytest_terminal_summary(terminalreporter):
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    for f in _FIGURES:
        terminalreporter.write_line(f"{f['test']} [{f['size']}]: {f['figure']}")
    out = os.environ.get("CANDLEWICK_RELIABILITY_OUT")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(_FIGURES, indent=2))
