"""`candlewick feed` as a tool: the base URL, a progress line, Ctrl-C, refusals and an absent server, its flags."""

from __future__ import annotations

import sys

import pytest

from candlewick import __version__
from tests.conftest import API_KEY, free_port, server_process
from tests.e2e._cli import (candlewick, events, interrupt_when, log_lines, on_terminal, only_line,
                            options_without_help)


def test_feed_takes_the_base_url_and_logs_no_line_per_request(tmp_path):
    """`--url http://host:port` posts to the webhook; stderr holds the start and the summary, not a line per request."""
    with server_process(tmp_path, "--no-feeder") as sp:
        out = candlewick("feed", "--url", sp.base_url, "--api-key", API_KEY, "--rate", "2000", "--total", "600",
                         "--batch", "20")
    assert out.returncode == 0, out.stderr[-2000:]
    assert events(out.stderr) == ["feed_started", "feed_done"]
    done = log_lines(out.stderr)[-1]
    assert (done["posted"], done["accepted"], done["duplicates"], done["errors"]) == (600, 600, 0, 0)


def test_a_refused_key_is_one_error_line_and_exit_1(tmp_path):
    """A key the server does not accept: one feed_refused line saying so (401), exit 1, no traceback."""
    with server_process(tmp_path, "--no-feeder") as sp:
        out = candlewick("feed", "--url", sp.base_url, "--api-key", "wrong-key", "--total", "10")
    assert out.returncode == 1, out.stderr[-2000:]
    assert events(out.stderr) == ["feed_started", "feed_refused"]
    assert "refused the API key (401)" in log_lines(out.stderr)[-1]["error"]


def test_an_unreachable_server_is_retried_a_bounded_number_of_times_then_given_up():
    """No server at the URL: each retry is logged as server_unreachable, then feed_gave_up and exit 1."""
    out = candlewick("feed", "--url", f"http://127.0.0.1:{free_port()}", "--api-key", "k", "--retries", "2")
    assert out.returncode == 1, out.stderr[-2000:]
    assert events(out.stderr) == ["feed_started", "server_unreachable", "server_unreachable", "feed_gave_up"]
    assert "is the server running?" in log_lines(out.stderr)[-1]["error"]


def test_ctrl_c_stops_the_feed_with_a_summary_and_exit_0(tmp_path):
    """SIGINT while feeding: the feed stops, logs feed_done (interrupted) and exits 0; before it, progress lines
    came (stderr is not a terminal here)."""
    err = tmp_path / "feed.err"
    with server_process(tmp_path, "--no-feeder") as sp:
        code = interrupt_when([sys.executable, "-m", "candlewick", "feed", "--url", sp.base_url, "--api-key", API_KEY,
                               "--rate", "500", "--progress-every", "0.1"], err,
                              r'"accepted": [1-9].*"event": "feed_progress"', deadline=15, wait=10)
    stderr = err.read_text()
    assert code == 0, stderr[-2000:]
    done = log_lines(stderr)[-1]
    assert done["event"] == "feed_done" and done["interrupted"] is True and done["posted"] > 0
    assert set(events(stderr)) == {"feed_started", "feed_progress", "feed_done"}


def test_on_a_terminal_the_progress_line_is_redrawn_in_place(tmp_path):
    """With stderr a terminal, progress is one line rewritten with a carriage return, not a line per update."""
    with server_process(tmp_path, "--no-feeder") as sp:
        code, text = on_terminal("feed", "--url", sp.base_url, "--api-key", API_KEY, "--rate", "400", "--total", "600")
    assert code == 0, text[-2000:]
    assert text.count("\r\x1b[K") >= 2 and "ticks/s" in text and "accepted" in text
    assert '"event": "feed_done"' in text and "HTTP Request" not in text


@pytest.mark.parametrize(("flag", "value"), [("--rate", "0"), ("--rate", "-3"), ("--batch", "0"), ("--total", "-1"),
                                             ("--url", "ftp://x"), ("--url", "http://"), ("--symbols", ","),
                                             ("--retries", "-1"), ("--progress-every", "0")])
def test_a_bad_feed_flag_exits_2_with_one_line_naming_it(flag, value):
    """Feed's flags are checked like settings: exit 2 and one bad_configuration line naming the flag."""
    out = candlewick("feed", "--api-key", "k", flag, value)
    assert out.returncode == 2, out.stderr[-2000:]
    line = only_line(out.stderr)
    assert (line["event"], line["setting"], line["value"]) == ("bad_configuration", flag, value)


def test_version_prints_the_version():
    """`candlewick --version` prints the package version and exits 0."""
    out = candlewick("--version")
    assert (out.returncode, out.stdout.strip()) == (0, f"candlewick {__version__}")


@pytest.mark.parametrize("command", [(), ("run",), ("feed",), ("migrate",)], ids=["top", "run", "feed", "migrate"])
def test_every_flag_has_help_text(command):
    """Every option of every command says what it does in --help."""
    out = candlewick(*command, "--help")
    assert out.returncode == 0
    assert options_without_help(out.stdout) == [], out.stdout

