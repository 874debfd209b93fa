"""Configuration: one frozen object built from the environment, with command-line overrides."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping

import attrs


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


ROLES = ("all", "ingest", "worker", "gateway")


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
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Config:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if "HOST" in env:
            values["host"] = env["HOST"]
        if "PORT" in env:
            values["port"] = int(env["PORT"])
        values["api_keys"] = _csv(env.get("API_KEYS"))
        values["database_url"] = env.get("DATABASE_URL") or None
        values["redis_url"] = env.get("REDIS_URL") or None
        if env.get("ROLE"):
            values["role"] = env["ROLE"]
        values["redis_cluster"] = _bool(env.get("REDIS_CLUSTER"), False)
        if env.get("REDIS_CHANNEL"):
            values["redis_channel"] = env["REDIS_CHANNEL"]
        if env.get("REDIS_PREFIX"):
            values["redis_prefix"] = env["REDIS_PREFIX"]
        values["cors_allow_origins"] = _csv(env.get("CORS_ALLOW_ORIGINS"))
        values["log_pretty"] = _bool(env.get("LOG_PRETTY"), False)
        values["feeder"] = _bool(env.get("FEEDER"), values["database_url"] is None
                                 and overrides.get("role", env.get("ROLE")) in (None, "", "all"))
        for name, conv in (("feeder_rate", float), ("flush_max_ticks", int), ("flush_lanes", int), ("lateness", float), ("max_in_flight_ticks", int),
                           ("ingest_deadline", float), ("ack_deadline", float), ("max_restarts", int),
                           ("restart_period", float), ("retention_raw_ticks", int),
                           ("retention_raw_seconds", float), ("retention_bar_seconds", float),
                           ("dedupe_max_keys", int), ("read_timeout", float), ("sse_replay", int),
                           ("sse_queue_capacity", int), ("sse_coalesce", float), ("shards", int),
                           ("idempotency_ttl", int), ("lease_ttl", float), ("stream_max_backlog", int)):
            raw = env.get(name.upper())
            if raw:
                values[name] = conv(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values).validated()  # type: ignore[arg-type]

    def validated(self) -> Config:
        """Raise ``ValueError`` with what to change when settings cannot work together."""
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {self.role!r}")
        if self.role != "all" and not (self.redis_url and self.database_url):
            raise ValueError(f"role {self.role} needs REDIS_URL and DATABASE_URL (processes share both)")
        if self.shards < 1:
            raise ValueError("SHARDS must be at least 1")
        return self

    def with_generated_key(self) -> tuple[Config, str | None]:
        """Return a config that has at least one API key, and the key if one was generated."""
        if self.api_keys:
            return self, None
        key = secrets.token_urlsafe(24)
        return attrs.evolve(self, api_keys=(key,)), key
