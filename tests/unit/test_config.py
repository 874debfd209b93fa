"""Configuration: every setting is checked once; a value that cannot work names the setting, the value and what is accepted."""

from __future__ import annotations

import logging

import pytest

from candlewick.config import BadSetting, Config, logging_settings


def bad(env: dict[str, str] | None = None, **flags: str) -> BadSetting:
    with pytest.raises(BadSetting) as caught:
        Config.from_env(env or {}, flags=flags)
    return caught.value


@pytest.mark.parametrize(("name", "value"), [
    ("FEEDER_RATE", "0"), ("FEEDER_RATE", "-1"), ("FEEDER_RATE", "nan"), ("FEEDER_RATE", "inf"),
    ("FEEDER_RATE", "fast"), ("PORT", "abc"), ("PORT", "0"), ("PORT", "65536"), ("PORT", "80.5"),
    ("LATENESS", "foo"), ("LATENESS", "-1"), ("SHARDS", "0"), ("FLUSH_LANES", "0"), ("FLUSH_MAX_TICKS", "-5"),
    ("MAX_IN_FLIGHT_TICKS", "0"), ("DEDUPE_MAX_KEYS", "0"), ("SSE_QUEUE_CAPACITY", "0"), ("SSE_REPLAY", "-1"),
    ("SSE_COALESCE", "-0.1"), ("READ_TIMEOUT", "0"), ("INGEST_DEADLINE", "0"), ("ACK_DEADLINE", "1e999"),
    ("LEASE_TTL", "0"), ("RESTART_PERIOD", "0"), ("MAX_RESTARTS", "-1"), ("IDEMPOTENCY_TTL", "0"),
    ("STREAM_MAX_BACKLOG", "0"), ("RETENTION_RAW_TICKS", "0"), ("RETENTION_RAW_SECONDS", "0"),
    ("RETENTION_BAR_SECONDS", "-1"), ("FEEDER", "maybe"), ("LOG_PRETTY", "2"), ("REDIS_CLUSTER", "si"),
    ("LOG_LEVEL", "loud"), ("ROLE", "boss"), ("HOST", "bad host"), ("HOST", "under_score"),
    ("DATABASE_URL", "notaurl"), ("DATABASE_URL", "mysql://127.0.0.1/db"),
    ("DATABASE_URL", "postgresql://127.0.0.1:99999/db"), ("DATABASE_URL", "postgresql://h:abc/db"),
    ("REDIS_URL", "foo://x"), ("REDIS_URL", "127.0.0.1:6379"), ("REDIS_URL", "redis://h:70000/0"),
    ("REDIS_URL", "unix://"),
])
def test_a_value_that_cannot_work_names_the_variable_the_value_and_what_is_accepted(name, value):
    """Each bad environment value raises BadSetting naming the variable, the value as given and a description."""
    exc = bad({name: value})
    assert (exc.setting, exc.value) == (name, value)
    assert exc.accepted and name in str(exc)


@pytest.mark.parametrize(("field", "flag", "value"), [
    ("port", "--port", "99999"), ("port", "--port", "abc"), ("host", "--host", "not a host"),
    ("feeder_rate", "--feeder-rate", "0"), ("role", "--role", "king"),
])
def test_a_bad_flag_is_named_as_the_flag(field, flag, value):
    """A flag's value is checked by the same rules as its variable, and the error names the flag."""
    exc = bad(**{field: value})
    assert (exc.setting, exc.value) == (flag, value)


def test_a_flag_overrides_its_variable_before_the_check():
    """A good flag wins over a bad variable's value only if given; the flag's own value is what counts."""
    assert Config.from_env({"PORT": "9001"}, flags={"port": "9002"}).port == 9002
    assert bad({"PORT": "1"}, port="0").setting == "--port"


def test_urls_hide_their_password_in_the_error():
    """A rejected DATABASE_URL or REDIS_URL is shown without its password."""
    exc = bad({"DATABASE_URL": "postgresql://me:s3cret@db:99999/x"})
    assert "s3cret" not in exc.value and "s3cret" not in str(exc) and exc.value.startswith("postgresql://me:")
    assert "s3cret" not in bad({"REDIS_URL": "redis://:s3cret@h:0/0"}).value


@pytest.mark.parametrize("url", [
    "postgresql://127.0.0.1:5432/candlewick", "postgres://user:pw@db.example.com/candlewick",
    "postgresql://u@[::1]:5432/db", "postgresql://h1:5432,h2:5433/db", "postgresql:///db?host=/run/postgresql", "postgresql:///db",
    "postgresql://%2Frun%2Fpostgresql/db",
])
def test_postgres_urls_that_can_work_are_kept_as_given(url):
    """Host, IPv6, multi-host and socket-path DSNs pass unchanged; nothing connects."""
    assert Config.from_env({"DATABASE_URL": url}).database_url == url


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://:pw@cache:6380", "redis://",
                                 "unix:///run/redis/redis.sock?db=1"])
def test_redis_urls_that_can_work_are_kept_as_given(url):
    """redis://, rediss:// and unix:// URLs pass unchanged."""
    assert Config.from_env({"REDIS_URL": url}).redis_url == url


def test_defaults_and_empty_values():
    """No environment gives the defaults; an empty variable counts as unset."""
    assert Config.from_env({}) == Config()
    blank = {name: "" for name in ("PORT", "HOST", "FEEDER_RATE", "FEEDER", "DATABASE_URL", "LOG_LEVEL", "SHARDS")}
    assert Config.from_env(blank) == Config()


def test_good_values_are_read():
    """Numbers, booleans in their spellings, choices in any case and LOG_LEVEL are read."""
    config = Config.from_env({"PORT": "9000", "HOST": "::1", "FEEDER_RATE": "2.5", "FEEDER": "off",
                              "REDIS_CLUSTER": "Yes", "ROLE": "All", "LOG_LEVEL": "WARNING", "SSE_COALESCE": "0",
                              "LATENESS": "0", "MAX_RESTARTS": "0", "API_KEYS": "a, b,"})
    assert (config.port, config.host, config.feeder_rate, config.feeder, config.redis_cluster, config.role) == \
        (9000, "::1", 2.5, False, True, "all")
    assert (config.log_level, config.sse_coalesce, config.lateness, config.max_restarts, config.api_keys) == \
        (logging.WARNING, 0.0, 0.0, 0, ("a", "b"))


def test_the_feeder_defaults_off_with_a_database_or_another_role():
    """The built-in feeder runs by default only in a role-all process without DATABASE_URL; FEEDER decides if set."""
    pg, redis = "postgresql://127.0.0.1/x", "redis://127.0.0.1"
    assert Config.from_env({}).feeder is True
    assert Config.from_env({"DATABASE_URL": pg}).feeder is False
    assert Config.from_env({"DATABASE_URL": pg, "REDIS_URL": redis}, flags={"role": "gateway"}).feeder is False
    assert Config.from_env({"DATABASE_URL": pg, "FEEDER": "1"}).feeder is True


def test_roles_other_than_all_need_redis_and_postgres():
    """ROLE=worker without REDIS_URL and DATABASE_URL is refused, naming where the role came from."""
    assert bad({"ROLE": "worker"}).setting == "ROLE"
    assert bad(role="ingest").setting == "--role"


def test_logging_settings_fall_back_to_the_defaults_for_values_the_check_will_report():
    """The logging used to report a bad setting is configured even when LOG_PRETTY or LOG_LEVEL is bad."""
    assert logging_settings({"LOG_PRETTY": "1", "LOG_LEVEL": "debug"}) == (True, logging.DEBUG)
    assert logging_settings({"LOG_PRETTY": "perhaps", "LOG_LEVEL": "loud"}) == (False, logging.INFO)
