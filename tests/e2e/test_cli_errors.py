"""A setting that cannot work, a taken port, a database migrate cannot use: one log line each, no traceback."""

from __future__ import annotations

import socket
import uuid
from urllib.parse import urlsplit

import pytest

from tests.conftest import PG_ADMIN, free_port, pg_database_url
from tests.e2e._cli import candlewick, only_line

BAD_RUN = [
    ({"FEEDER_RATE": "0"}, (), "FEEDER_RATE", "0"),
    ({"FEEDER_RATE": "-1"}, (), "FEEDER_RATE", "-1"),
    ({"PORT": "abc"}, (), "PORT", "abc"),
    ({"LATENESS": "foo"}, (), "LATENESS", "foo"),
    ({"REDIS_URL": "foo://x"}, (), "REDIS_URL", "foo://x"),
    ({"DATABASE_URL": "notaurl"}, (), "DATABASE_URL", "notaurl"),
    ({"FEEDER": "maybe"}, (), "FEEDER", "maybe"),
    ({"LOG_LEVEL": "loud"}, (), "LOG_LEVEL", "loud"),
    ({}, ("--port", "99999"), "--port", "99999"),
    ({}, ("--host", "no such host"), "--host", "no such host"),
    ({}, ("--feeder-rate", "0"), "--feeder-rate", "0"),
]


@pytest.mark.parametrize(("env", "flags", "setting", "value"), BAD_RUN,
                         ids=[f"{s}={v}" for _, _, s, v in BAD_RUN])
def test_run_with_a_bad_setting_exits_2_with_one_line_naming_it(env, flags, setting, value):
    """`candlewick run` stops before starting anything: exit 2, one bad_configuration line with the setting,
    the value given and what is accepted."""
    out = candlewick("run", "--host", "127.0.0.1", *flags, env={"PORT": str(free_port()), **env})
    assert out.returncode == 2, out.stderr[-2000:]
    line = only_line(out.stderr)
    assert (line["event"], line["setting"], line["value"], line["level"]) == ("bad_configuration", setting, value, "error")
    assert line["accepted"]


def test_a_bad_setting_is_one_pretty_line_with_log_pretty():
    """With LOG_PRETTY=1 the same error is one human-readable line naming the variable."""
    out = candlewick("run", env={"LOG_PRETTY": "1", "FEEDER_RATE": "0"})
    assert out.returncode == 2
    assert len(out.stderr.splitlines()) == 1 and not out.stderr.startswith("{")
    assert "bad_configuration" in out.stderr and "FEEDER_RATE" in out.stderr and "Traceback" not in out.stderr


def test_log_level_filters_what_is_written():
    """LOG_LEVEL=error leaves out info lines (here `migrate`'s note that there is nothing to migrate)."""
    assert only_line(candlewick("migrate", env={"DATABASE_URL": ""}).stderr)["event"] == "migrate_skipped"
    out = candlewick("migrate", env={"DATABASE_URL": "", "LOG_LEVEL": "error"})
    assert (out.returncode, out.stderr) == (0, "")


def test_a_taken_port_is_one_line_before_any_key_or_engine():
    """A port another socket listens on: one address_in_use line naming the address, a non-zero exit, and
    neither a generated key nor a running engine logged before it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = candlewick("run", "--host", "127.0.0.1", "--port", str(port), env={"API_KEYS": ""})
    assert out.returncode == 1, out.stderr[-2000:]
    line = only_line(out.stderr)
    assert (line["event"], line["address"]) == ("address_in_use", f"127.0.0.1:{port}")
    assert "api_key_generated" not in out.stderr and "engine_running" not in out.stderr


@pytest.mark.parametrize(("dsn", "says"), [
    (pg_database_url(f"cw_missing_{uuid.uuid4().hex[:8]}"), "does not exist"),
    (f"postgresql://127.0.0.1:{free_port()}/postgres", "Connect call failed"),
    (f"postgresql://cw_no_such_role@{urlsplit(PG_ADMIN).netloc.rpartition('@')[2]}/postgres",
     'role "cw_no_such_role" does not exist'),
], ids=["missing-database", "refused", "bad-credentials"])
def test_migrate_against_a_database_it_cannot_use_is_one_line(dsn, says):
    """`candlewick migrate` with a missing database, a refused connection or an unknown user: exit 1, one
    migrate_failed line that says why."""
    out = candlewick("migrate", env={"DATABASE_URL": dsn})
    assert out.returncode == 1, out.stderr[-2000:]
    line = only_line(out.stderr)
    assert line["event"] == "migrate_failed" and says in line["error"], line


def test_migrate_checks_its_url_and_still_migrates(pg_url):
    """`candlewick migrate` refuses DATABASE_URL=notaurl like `run` does, and applies the migrations to a real one."""
    out = candlewick("migrate", env={"DATABASE_URL": "notaurl"})
    assert out.returncode == 2 and only_line(out.stderr)["setting"] == "DATABASE_URL"
    out = candlewick("migrate", env={"DATABASE_URL": pg_url})
    assert out.returncode == 0, out.stderr[-2000:]
    assert only_line(out.stderr)["event"] == "migrated"


@pytest.mark.parametrize("command", [("migrate",), ("feed", "--total", "1")])
@pytest.mark.parametrize("name, value", [("LOG_LEVEL", "loud"), ("LOG_PRETTY", "2")])
def test_migrate_and_feed_check_the_logging_settings_too(command, name, value):
    """A logging setting that cannot work stops `migrate` and `feed` as it stops `run`: one line, exit 2."""
    out = candlewick(*command, env={name: value, "DATABASE_URL": "", "API_KEY": "k"})
    assert out.returncode == 2, out.stderr[-2000:]
    assert only_line(out.stderr)["setting"] == name
