"""Configuration: one frozen object built from the environment and flags, every setting checked once.

A setting (an environment variable or a flag) is text read by its ``Kind``: what it parses to and
what it accepts. One that can never work raises ``BadSetting``, naming the setting, the value
given and what is accepted; the command line reports it on one line and exits with code 2. An
empty variable counts as unset. Nothing connects here: a database or Redis that is merely down is
waited for by the engine, a URL that cannot be parsed stops the start.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import secrets
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import attrs

from candlewick.errors import BadSetting


def _shown(raw: str) -> str:
    return raw


@attrs.frozen
class Kind:
    """How a setting's text is read: ``parse`` raises ``ValueError`` on a value outside ``accepted``."""

    parse: Callable[[str], object]
    accepted: str
    """What the error line says is accepted."""
    show: Callable[[str], str] = _shown
    """How the value given is shown in the error line (URLs hide their password)."""

    def read(self, setting: str, raw: str) -> object:
        try:
            return self.parse(raw.strip())
        except ValueError:
            raise BadSetting(setting, self.show(raw), self.accepted) from None


def integer(low: int, high: int | None = None) -> Kind:
    """A whole number from ``low`` (to ``high``)."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low or (high is not None and value > high):
            raise ValueError(text)
        return value

    return Kind(parse, f"an integer from {low} to {high}" if high is not None else f"an integer, {low} or more")


def number(low: float, *, above: bool = False) -> Kind:
    """A finite decimal number, at least ``low`` (or more than it, with ``above``)."""
    def parse(text: str) -> float:
        value = float(text)
        if not math.isfinite(value) or value < low or (above and value == low):
            raise ValueError(text)
        return value

    return Kind(parse, f"a number {'above' if above else 'of at least'} {low:g}")


def choice(*options: str) -> Kind:
    def parse(text: str) -> str:
        if text.lower() not in options:
            raise ValueError(text)
        return text.lower()

    return Kind(parse, "one of " + ", ".join(options))


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _text(text: str) -> str:
    if not text:
        raise ValueError(text)
    return text


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


def _host(text: str) -> str:
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        ipaddress.ip_address(bare)
        return bare
    except ValueError:
        if _HOSTNAME.fullmatch(text) is None:
            raise
        return text


def _hide_password(raw: str) -> str:
    """The URL with whatever stands between ``user:`` and the netloc's last ``@`` masked (a
    malformed URL, the one an error line shows, may hold ``/`` or ``@`` in its password)."""
    scheme, sep, rest = raw.partition("//")
    if not sep or "@" not in rest:
        return raw
    userinfo, at, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}//{user}:***@{host}" if colon else raw


def _host_port(spec: str) -> tuple[str, str]:
    """``host[:port]`` or ``[v6][:port]``; the port, if any, must be a valid one."""
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(spec)
        port = rest[1:]
    else:
        host, _, port = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if port:
        PORT.parse(port)
    return host, port


def _postgres_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(text)
    for spec in parts.netloc.rpartition("@")[2].split(","):  # no host: libpq's default socket, as psql
        if spec:
            _host_port(spec)
    return text


def _redis_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme in ("redis", "rediss"):
        _host_port(parts.netloc.rpartition("@")[2])
    elif parts.scheme != "unix" or not parts.path:
        raise ValueError(text)
    return text


def _log_level(text: str) -> int:
    return logging.getLevelNamesMapping()[choice("debug", "info", "warning", "error").parse(text).upper()]


PORT = integer(1, 65535)
BOOLEAN = Kind(_boolean, "1, true, yes or on; 0, false, no or off")
TEXT = Kind(_text, "a non-empty text")
CSV = Kind(_csv, "a comma-separated list")
HOST = Kind(_host, "an IP address or a host name, e.g. 127.0.0.1, 0.0.0.0, ::1 or localhost")
POSTGRES_URL = Kind(_postgres_url, "a postgresql:// or postgres:// URL, e.g. "
                                   "postgresql://user@127.0.0.1:5432/candlewick or postgresql:///candlewick?host=/run/postgresql",
                    _hide_password)
REDIS_URL = Kind(_redis_url, "a redis://, rediss:// or unix:// URL, e.g. redis://127.0.0.1:6379/0 or "
                             "unix:///run/redis/redis.sock", _hide_password)
LOG_LEVEL = Kind(_log_level, "one of debug, info, warning, error")
ROLES = ("all", "ingest", "worker", "gateway")
COUNT = integer(1)
RATE = number(0, above=True)
SECONDS = number(0, above=True)

SETTINGS: dict[str, Kind] = {
    "host": HOST, "port": PORT, "api_keys": CSV, "database_url": POSTGRES_URL, "redis_url": REDIS_URL,
    "cors_allow_origins": CSV, "log_pretty": BOOLEAN, "log_level": LOG_LEVEL, "feeder": BOOLEAN,
    "feeder_rate": RATE, "role": choice(*ROLES), "shards": COUNT, "idempotency_ttl": COUNT,
    "redis_cluster": BOOLEAN, "redis_channel": TEXT, "redis_prefix": TEXT, "lease_ttl": SECONDS,
    "stream_max_backlog": COUNT, "max_in_flight_ticks": COUNT, "ingest_deadline": SECONDS,
    "ack_deadline": SECONDS, "flush_max_ticks": COUNT, "flush_lanes": COUNT, "lateness": number(0),
    "dedupe_max_keys": COUNT, "max_restarts": integer(0), "restart_period": SECONDS,
    "retention_raw_ticks": COUNT, "retention_raw_seconds": SECONDS, "retention_bar_seconds": SECONDS,
    "sse_queue_capacity": COUNT, "sse_replay": integer(0), "sse_coalesce": number(0), "read_timeout": SECONDS,
    "pg_retention_raw": number(0), "pg_retention_1m": number(0), "pg_partition_raw": integer(3_600, 31 * 86_400),
    "pg_maintenance_period": SECONDS,
}
"""Every setting read from the environment (its variable is the field's name in capitals) and how."""


def env_name(field: str) -> str:
    return field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def setting(field: str, env: Mapping[str, str] | None = None) -> object | None:
    """One setting from the environment, checked; ``None`` when it is unset or empty."""
    raw = (os.environ if env is None else env).get(env_name(field))
    if raw is None or not raw.strip():
        return None
    return SETTINGS[field].read(env_name(field), raw)


def logging_settings(env: Mapping[str, str] | None = None) -> tuple[bool, int]:
    """``(pretty, level)`` for reporting anything at all, the defaults for values that are not
    accepted (the full check then reports them)."""
    try:
        pretty = setting("log_pretty", env)
    except BadSetting:
        pretty = None
    try:
        level = setting("log_level", env)
    except BadSetting:
        level = None
    return bool(pretty), logging.INFO if level is None else level  # type: ignore[return-value]


@attrs.frozen
class Config:
    """Everything an engine needs to know; see the README's configuration table."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[str, ...] = ()
    """Accepted ``x-api-key`` values. Empty means one is generated at start and logged once."""
    database_url: str | None = None
    redis_url: str | None = None
    cors_allow_origins: tuple[str, ...] = ()
    log_pretty: bool = False
    log_level: int = logging.INFO
    """The least severe log level written (``LOG_LEVEL``: debug, info, warning or error)."""
    feeder: bool = True
    """Run the built-in synthetic feeder (default: only when no DATABASE_URL is set)."""
    feeder_rate: float = 20.0
    """Ticks per second the built-in feeder produces, across all its symbols."""
    feeder_symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")

    # scale-out (Redis)
    role: str = "all"
    """``all`` (one process does everything), ``ingest`` (validate, dedupe, append to the shard
    streams), ``worker`` (own shards: actors + flusher into Postgres) or ``gateway`` (SSE and reads)."""
    shards: int = 8
    """Stream shards ticks are spread over by a stable hash of the symbol (workers own shards)."""
    idempotency_ttl: int = 3 * 86_400
    """Seconds an idempotency key stays claimed in Redis."""
    redis_cluster: bool = False
    """Redis is a Cluster: claim keys per symbol (one hash slot per script call)."""
    redis_channel: str = "ch:ticks"
    redis_prefix: str = "cw:"
    lease_ttl: float = 5.0
    """Seconds a worker's shard lease lasts unrenewed: how soon a dead worker's shards move."""
    stream_max_backlog: int = 100_000
    """Stream entries waiting in one shard before ingest refuses with 503 OVERLOADED."""

    # pipeline bounds
    mailbox_capacity: int = 64
    """Messages (each a list of ticks) waiting per symbol actor."""
    max_in_flight_ticks: int = 200_000
    """Ticks admitted but not yet committed, across the engine: the memory bound of ingest."""
    ingest_deadline: float = 5.0
    """Seconds a request may wait for admission before 503 OVERLOADED."""
    ack_deadline: float = 10.0
    """Seconds a request may wait for its ticks to be committed before 503 STORE_UNAVAILABLE."""
    flush_max_ticks: int = 5_000
    """Ticks per store write at most (group commit: a write takes what is waiting, up to this)."""
    flush_lanes: int | None = None
    """Flushers writing in parallel, each owning a stable share of the symbols (so per-symbol
    order holds). Default: 2 with Postgres (measured best on 2 cores), 1 with the memory store."""
    flusher_capacity: int = 256
    """Flush items (one per actor wake-up) waiting per flusher lane."""

    # domain
    lateness: float = 3600.0
    """Seconds behind a symbol's newest trade that a tick is still applied (and deduped exactly)."""
    dedupe_max_keys: int = 100_000
    """Keys remembered per symbol at most; past it the lateness horizon shrinks."""

    # supervision
    max_restarts: int = 5
    restart_period: float = 60.0

    # memory store retention
    retention_raw_ticks: int = 2_000_000
    retention_raw_seconds: float = 86_400.0
    retention_bar_seconds: float = 7 * 86_400.0

    # Postgres retention and partitions
    pg_retention_raw: float = 30 * 86_400.0
    """Seconds raw ticks are kept in Postgres (0: for ever); partitions past it are dropped whole."""
    pg_retention_1m: float = 365 * 86_400.0
    """Seconds 1-minute candles are kept in Postgres (0: for ever); the 5m..1w rollups are kept for ever."""
    pg_partition_raw: int = 86_400
    """Seconds each raw-tick partition spans (daily)."""
    pg_maintenance_period: float = 10.0
    """Seconds between two maintenance steps: partitions made ahead of time, those past retention dropped."""

    # realtime
    sse_queue_capacity: int = 1_024
    """Events waiting per SSE subscriber before it is resynced."""
    sse_replay: int = 10_000
    """Events kept for Last-Event-ID replay."""
    sse_keepalive: float = 15.0
    sse_coalesce: float = 0.02
    """Seconds at least between two writes to one SSE subscriber: events that come faster share a
    write (an event after a quiet spell goes out at once). 0 writes whenever something waits."""

    # http
    max_body_bytes: int = 4 * 1024 * 1024
    read_timeout: float = 120.0
    """Hypercorn's read timeout: closes connections that send nothing for this long
    (an SSE client then reconnects and replays from Last-Event-ID)."""
    graceful_timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, flags: Mapping[str, object] | None = None,
                 **overrides: object) -> Config:
        """Read every setting of ``SETTINGS`` from ``env``, then ``flags`` (by field: their text, checked
        and named as ``--field-name``; a bool as it is), then ``overrides`` as they are; check them
        together. Raises ``BadSetting`` for the first value that cannot work."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        names = {field: env_name(field) for field in SETTINGS}
        for field in SETTINGS:
            value = setting(field, env)
            if value is not None:
                values[field] = value
        for field, raw in (flags or {}).items():
            if isinstance(raw, str):
                values[field] = SETTINGS[field].read(flag_name(field), raw)
                names[field] = flag_name(field)
            elif raw is not None:
                values[field] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        values.setdefault("feeder", "database_url" not in values and values.get("role", "all") == "all")
        return cls(**values)._checked(names)  # type: ignore[arg-type]

    def validated(self) -> Config:
        """Raise ``BadSetting`` with what to change when settings cannot work together."""
        return self._checked({})

    def _checked(self, names: Mapping[str, str]) -> Config:
        if self.role not in ROLES:
            raise BadSetting(names.get("role", "ROLE"), self.role, "one of " + ", ".join(ROLES))
        if self.role != "all" and not (self.redis_url and self.database_url):
            raise BadSetting(names.get("role", "ROLE"), self.role,
                             "all, unless REDIS_URL and DATABASE_URL are both set (processes of the other roles share both)")
        if 0 < self.pg_retention_raw < self.lateness:
            raise BadSetting(names.get("pg_retention_raw", "PG_RETENTION_RAW"), f"{self.pg_retention_raw:g}",
                             f"0 (for ever) or at least LATENESS ({self.lateness:g} s): a restarted symbol reloads "
                             "the keys of its horizon from the raw ticks")
        if 0 < self.pg_retention_1m < self.pg_retention_raw:
            raise BadSetting(names.get("pg_retention_1m", "PG_RETENTION_1M"), f"{self.pg_retention_1m:g}",
                             f"0 (for ever) or at least PG_RETENTION_RAW ({self.pg_retention_raw:g} s)")
        return self

    def with_generated_key(self) -> tuple[Config, str | None]:
        """Return a config that has at least one API key, and the key if one was generated."""
        if self.api_keys:
            return self, None
        key = secrets.token_urlsafe(24)
        return attrs.evolve(self, api_keys=(key,)), key
