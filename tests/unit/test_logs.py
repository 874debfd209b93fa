"""candlewick.logs: colours only on a terminal, level names, the logger's name on every line."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
import structlog

from candlewick.logs import configure_logging, log_level


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def stderr(monkeypatch):
    """Swap sys.stderr for a stream the test picks; the logging set-up is restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())

    def use(stream: io.StringIO) -> io.StringIO:
        monkeypatch.setattr(sys, "stderr", stream)
        return stream

    yield use
    root.handlers[:], level, config = saved
    root.setLevel(level)
    structlog.configure(**config)


def emit() -> None:
    structlog.get_logger("candlewick.test").warning("structlog_line", n=1)
    logging.getLogger("hypercorn.error").warning("stdlib line")


@pytest.mark.parametrize("stream, coloured", [(io.StringIO, False), (Terminal, True)], ids=["file", "terminal"])
def test_pretty_logs_use_colour_only_on_a_terminal(stderr, stream, coloured):
    """LOG_PRETTY renders in colour to a terminal and in plain text to anything else (a file, a pipe)."""
    out = stderr(stream())
    configure_logging(pretty=True)
    emit()
    text = out.getvalue()
    assert "structlog_line" in text and "stdlib line" in text
    assert ("\x1b[" in text) is coloured, text


def test_json_lines_name_their_logger(stderr):
    """Every JSON line names its logger, structlog's and the standard library's alike."""
    out = stderr(io.StringIO())
    configure_logging(pretty=False)
    emit()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["event"], x["logger"], x["level"]) for x in lines] == [
        ("structlog_line", "candlewick.test", "warning"), ("stdlib line", "hypercorn.error", "warning")]


def test_level_filters_and_takes_names(stderr):
    """The level is a number or a name (any case); lines below it are not written; an unknown name is refused."""
    assert [log_level(x) for x in ("debug", "INFO", " Warning ", "warn", "error", "critical", "30", 40)] == \
        [10, 20, 30, 30, 40, 50, 30, 40]
    with pytest.raises(ValueError, match="unknown log level"):
        log_level("loud")
    out = stderr(io.StringIO())
    configure_logging(level="error")
    emit()
    structlog.get_logger("candlewick.test").error("kept")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["kept"]
