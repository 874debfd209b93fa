"""Postgres helpers of the pgscale scenario: a kept connection, ``candlewick migrate``, the raw tick table and its partitions.

Everything here is generic SQL over the catalogue (``pg_class``, ``pg_partition_tree``,
``pg_stat_user_tables``): the scenario measures whatever schema the code under test has.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

from bench._proc import postgres_pids
from bench._results import ROOT
from candlewick.runtime import pid_cpu_seconds


class Pg:
    """One asyncpg connection on a private event loop, used synchronously (polls cost no connect)."""

    def __init__(self, dsn: str) -> None:
        import asyncpg

        self.loop = asyncio.new_event_loop()
        self.con = self.loop.run_until_complete(asyncpg.connect(dsn, timeout=10))

    def _run(self, coro):
        return self.loop.run_until_complete(coro)

    def fetch(self, query: str, *args, timeout: float | None = None) -> list[dict]:
        return [dict(r) for r in self._run(self.con.fetch(query, *args, timeout=timeout))]

    def val(self, query: str, *args, timeout: float | None = None):
        return self._run(self.con.fetchval(query, *args, timeout=timeout))

    def execute(self, query: str, *args, timeout: float | None = None) -> str:
        return self._run(self.con.execute(query, *args, timeout=timeout))

    def close(self) -> None:
        try:
            self._run(self.con.close())
        finally:
            self.loop.close()

    def __enter__(self) -> Pg:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def candlewick_env(dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PORT", "HOST")}
    env["DATABASE_URL"] = dsn
    return env


def migrate(dsn: str) -> None:
    """``python -m candlewick migrate`` on ``dsn``: the schema of the code under test."""
    proc = subprocess.run([sys.executable, "-m", "candlewick", "migrate"], cwd=ROOT, env=candlewick_env(dsn),
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"candlewick migrate failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")


def cli_commands() -> set[str]:
    """The subcommands ``python -m candlewick --help`` lists (``{run,feed,migrate,...}``)."""
    out = subprocess.run([sys.executable, "-m", "candlewick", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL).stdout
    m = re.search(r"\{([a-z,_-]+)\}", out)
    return set(m.group(1).split(",")) if m else set()


def raw_table(pg: Pg) -> str | None:
    """The raw tick table: ``ticks_raw``, or else the one table named like ``*tick*`` with a price column."""
    if pg.val("SELECT to_regclass('ticks_raw') IS NOT NULL"):
        return "ticks_raw"
    rows = pg.fetch("""SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND c.relname LIKE '%tick%' AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
          AND a.attname = 'price' AND NOT a.attisdropped)""")
    return rows[0]["relname"] if len(rows) == 1 else None


TREE = "(SELECT $1::regclass AS relid UNION SELECT relid FROM pg_partition_tree($1::regclass))"
"""The table and, when it is partitioned, every table of its partition tree."""


def inserted(pg: Pg, table: str) -> int:
    """Rows inserted into the table's tree since the statistics began (``n_tup_ins``; a backend
    reports its counts at most once a second, and an idle one within seconds)."""
    return int(pg.val(f"SELECT coalesce(sum(s.n_tup_ins), 0)::bigint FROM pg_stat_user_tables s "
                      f"WHERE s.relid IN (SELECT relid FROM {TREE} t)", table))


def sizes(pg: Pg, table: str) -> dict:
    """Bytes of the table's tree (heap, indexes, total with TOAST), its partitions, and the database's size."""
    r = pg.fetch(f"""SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint AS total,
            coalesce(sum(pg_relation_size(relid)), 0)::bigint AS heap,
            coalesce(sum(pg_indexes_size(relid)), 0)::bigint AS indexes,
            (count(*) - 1)::int AS partitions FROM {TREE} t""", table)[0]
    r["database"] = int(pg.val("SELECT pg_database_size(current_database())"))
    r["index_names"] = [x["indexname"] for x in pg.fetch(
        "SELECT indexname FROM pg_indexes WHERE tablename = $1 ORDER BY 1", table)]
    return r


def partitioning(pg: Pg, table: str) -> dict | None:
    """How the table is partitioned (``pg_partitioned_table``): strategy, key and the partitions
    with their bounds as Postgres prints them; None when it is not."""
    row = pg.fetch("""SELECT partstrat::text AS strategy, pg_get_partkeydef($1::regclass) AS key
        FROM pg_partitioned_table WHERE partrelid = $1::regclass""", table)
    if not row:
        return None
    parts = pg.fetch("""SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass ORDER BY 1""", table)
    return {**row[0], "partitions": parts}


def range_partitions(pg: Pg, table: str) -> dict | None:
    """A table partitioned by RANGE of one column: its key, the key's type, and its partitions as
    (from, to, name), in the key's units (epoch seconds for a timestamp key), sorted. None when the
    table is not partitioned; ValueError when it is, some other way."""
    part = partitioning(pg, table)
    if part is None:
        return None
    if part["strategy"] != "r":
        raise ValueError(f"partition strategy {part['strategy']!r} is not RANGE")
    m = re.fullmatch(r"RANGE \((\w+)\)", part["key"])
    if not m:
        raise ValueError(f"partition key {part['key']!r} is not one column")
    key = m.group(1)
    typ = pg.val("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass "
                 "AND attname = $2", table, key)
    timestamp = typ.startswith("timestamp")
    parts = []
    for p in part["partitions"]:
        b = re.fullmatch(r"FOR VALUES FROM \((.+)\) TO \((.+)\)", p["bound"])
        if not b or "MINVALUE" in p["bound"] or "MAXVALUE" in p["bound"]:
            continue  # DEFAULT, or open-ended
        lo, hi = (v.strip("'") for v in b.groups())
        if timestamp:
            lo, hi = (float(pg.val(f"SELECT extract(epoch FROM $1::text::{typ})", v)) for v in (lo, hi))
        parts.append((float(lo), float(hi), p["name"]))
    return {"key": key, "type": typ, "timestamp": timestamp, "parts": sorted(parts), "partitioning": part}


def bound_literal(pg: Pg, info: dict, value: float) -> str:
    """A partition bound of ``range_partitions``' units as SQL text for the key's type."""
    if not info["timestamp"]:
        return str(int(value)) if float(value).is_integer() else repr(value)
    at = "" if info["type"].startswith("timestamp with") else " AT TIME ZONE 'UTC'"
    return "'" + pg.val(f"SELECT (to_timestamp($1){at})::text", float(value)) + "'"


def is_partition_of(pg: Pg, table: str, name: str) -> bool:
    return bool(pg.val("""SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = $1::regclass AND c.relname = $2)""", table, name))


class PgCpu:
    """CPU seconds Postgres spent for this database over a window, from /proc: its backends
    (``pg_stat_activity.datname``: the server's pool, autovacuum workers), the processes of no
    database (checkpointer, WAL writer, background writer) and the postmaster; not the backends of
    other databases (the machine is shared), nor ``pg``'s own. ``all_seconds`` counts every
    ``postgres`` process. A backend born inside the window spent all its CPU in it; one that
    ended inside it is lost."""

    def __init__(self, pg: Pg) -> None:
        self.pg = pg

    def _ours(self) -> set[int]:
        rows = self.pg.fetch("""SELECT pid, datname = current_database() OR datname IS NULL AS ours
            FROM pg_stat_activity WHERE pid <> pg_backend_pid()""")
        theirs = {r["pid"] for r in rows if not r["ours"]}
        return {pid for pid in postgres_pids() if pid not in theirs} - {self.pg.val("SELECT pg_backend_pid()")}

    def start(self) -> PgCpu:
        self.t0 = {pid: pid_cpu_seconds(pid) for pid in postgres_pids()}
        return self

    def stop(self) -> dict:
        ours = self._ours()
        spent = {}
        for pid in postgres_pids():
            now = pid_cpu_seconds(pid)
            if now is not None:
                spent[pid] = now - (self.t0.get(pid) or 0.0)
        return {"seconds": sum(v for p, v in spent.items() if p in ours), "all_seconds": sum(spent.values())}


def server_facts(pg: Pg) -> dict:
    facts = {"postgres": pg.val("SELECT version()")}
    for name in ("shared_buffers", "max_wal_size", "synchronous_commit", "fsync", "autovacuum", "work_mem"):
        facts[name] = pg.val(f"SHOW {name}")
    return facts
