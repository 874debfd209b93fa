"""pgscale part 1: sustained seed-style durable ingest, wrk in back-to-back slices, each slice's rate, ack latency and CPU.

The load is the seed's: wrk (one thread, K keep-alive connections) posting batches of 1,000 ticks
over 100 symbols, each tick's trade time random over the last hour (``span`` seconds, a little
under the server's one-hour lateness horizon so none is skipped), idempotency keys unique per
request. wrk runs in slices (one minute by default), one process after another, so each slice has
its own latency histogram: p50/p90/p99 of the slice's answers (wrk's own figures; answers that are
not 202 are counted in ``bad_status``). Between slices wrk abandons the requests in flight (at most
K); the server still applies them, so at the end rows stored >= ticks acknowledged.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

from bench._pg import temp_database
from bench._pgscale_db import Pg, PgCpu, inserted, raw_table, server_facts, sizes
from bench._postgres_workers import run_pg_worker
from bench._proc import CpuMeter
from bench._results import log
from bench._server import API_KEY, Server

WRK_LUA = r"""
-- Candlewick pgscale: seed-style ticks, trade times random over the last SPAN seconds, keys unique per request.
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local batch, nsym, prefix, key = tonumber(args[1]), tonumber(args[2]), args[3], args[4]
  span = tonumber(args[5])
  math.randomseed(os.time() * 100 + tid)
  local parts = {}
  for i = 0, batch - 1 do
    parts[#parts + 1] = string.format(
      '{"idempotencyKey":"%s-%02d-@@@@@@@@@@-%d","symbol":"B%05d","price":%.2f,"ts":TTTTTTTTTTTTTTTTT,"volume":%.3f}',
      prefix, tid, i, i % nsym, 100 + (i * 7919 % 10000) / 100, 0.5 + (i % 7) / 10)
  end
  template = '{"source":"bench","items":[' .. table.concat(parts, ",") .. ']}'
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["x-api-key"] = key
  counter, sent, acked, accepted, duplicates, skipped, bad = 0, 0, 0, 0, 0, 0, 0
end

local now = 0
local function trade_time()
  return string.format("%17.6f", now - math.random() * span)
end

function request()
  counter = counter + 1
  sent = sent + 1
  now = os.time()
  local body = template:gsub("@@@@@@@@@@", string.format("%010d", counter))
  body = body:gsub("TTTTTTTTTTTTTTTTT", trade_time)
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status == 202 then
    acked = acked + 1
    accepted = accepted + tonumber(body:match('"accepted":(%d+)') or 0)
    duplicates = duplicates + tonumber(body:match('"duplicates":(%d+)') or 0)
    skipped = skipped + tonumber(body:match('"skipped":(%d+)') or 0)
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local s, a, acc, dup, sk, b = 0, 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("sent"); a = a + t:get("acked"); acc = acc + t:get("accepted")
    dup = dup + t:get("duplicates"); sk = sk + t:get("skipped"); b = b + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    '\n{"sent_requests":%d,"acked_requests":%d,"accepted":%d,"duplicates":%d,"skipped":%d,"bad_status":%d,' ..
    '"wrk_requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    s, a, acc, dup, sk, b, summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


class WrkSlice:
    """One wrk process posting seed-style batches for ``seconds``; ``start()`` then ``finish()``,
    which returns the slice's figures (rate from the 202s' ``accepted``, wrk's latency, CPU)."""

    def __init__(self, server: Server, *, conns: int, batch: int, symbols: int, span: float, prefix: str,
                 seconds: int, pg: Pg | None = None) -> None:
        self.server, self.conns, self.batch, self.symbols, self.pg = server, conns, batch, symbols, pg
        self.span, self.prefix, self.seconds = span, prefix, max(1, int(seconds))
        self.proc: subprocess.Popen | None = None

    def start(self) -> WrkSlice:
        fd, self.script = tempfile.mkstemp(prefix="cw-pgscale-", suffix=".lua")
        with os.fdopen(fd, "w") as f:
            f.write(WRK_LUA)
        self.meter = CpuMeter(ndigits=None, server=self.server.pid).start()
        self.pgcpu = PgCpu(self.pg).start() if self.pg is not None else None
        self.t0 = time.perf_counter()
        self.started = time.time()
        self.proc = subprocess.Popen(
            ["wrk", "-t1", f"-c{self.conns}", f"-d{self.seconds}s", "--timeout", "30s", "-s", self.script,
             f"{self.server.base}/api/v1/webhooks/ticks", "--", str(self.batch), str(self.symbols), self.prefix,
             API_KEY, f"{self.span:g}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL)
        return self

    def finish(self) -> dict:
        assert self.proc is not None
        try:
            out, err = self.proc.communicate(timeout=self.seconds + 90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise RuntimeError(f"wrk did not end {self.seconds + 90} s after its start") from None
        finally:
            cpu = self.meter.stop()
            window = time.perf_counter() - self.t0
            if self.pgcpu is not None:
                pgs = self.pgcpu.stop()
                cpu.update(postgres_cores=pgs["seconds"] / window, postgres_all_cores=pgs["all_seconds"] / window)
            os.unlink(self.script)
        if self.proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({self.proc.returncode}): {err[-2000:]}")
        w = json.loads(next(ln for ln in reversed(out.splitlines()) if ln.startswith("{")))
        elapsed = w["duration_us"] / 1e6
        accepted = w["accepted"]
        us = {k[:-6]: v * window / accepted * 1e6 for k, v in cpu.items()
              if k.endswith("_cores") and k != "machine_busy_cores"} if accepted else {}
        return {"started": self.started, "seconds": elapsed, "cpu_window_s": window, "requests": w["acked_requests"],
                "sent_ticks": w["sent_requests"] * self.batch, "accepted": accepted, "duplicates": w["duplicates"],
                "skipped": w["skipped"], "bad_status": w["bad_status"], "wrk_errors": w["errors"],
                "rate": accepted / elapsed if elapsed else 0.0, "cpu": cpu, "us_per_tick": us,
                "latency": {"n": w["wrk_requests"], "p50_ms": w["p50_us"] / 1e3, "p90_ms": w["p90_us"] / 1e3,
                            "p99_ms": w["p99_us"] / 1e3, "max_ms": w["max_us"] / 1e3}}


def run_slice(server: Server, **kw) -> dict:
    return WrkSlice(server, **kw).start().finish()


def copy_reference(dsn: str, ticks: int, symbols: int, tag: str) -> dict:
    """Raw COPY of the same kind of rows (bench/postgres.py's ``copy`` worker, one writer) into an
    unindexed side table of the same database: the same-run reference of "durable / raw COPY"."""
    from bench._pg import sql

    sql(dsn, "CREATE TABLE pgscale_copy (idempotency_key text, symbol text, price float8, ts float8, volume float8)")
    try:
        r = run_pg_worker("copy", {"ticks": ticks, "symbols": symbols, "prefix": f"{tag}-copy", "dsn": dsn,
                                   "table": "pgscale_copy", "writers": 1})
    finally:
        sql(dsn, "DROP TABLE pgscale_copy")
    return {"ticks": r["accepted"], "seconds": r["elapsed"], "rate": r["rate"],
            "postgres_us_per_tick": r["cpu"].get("postgres_cores", 0.0) * r["elapsed"] / max(1, r["accepted"]) * 1e6}


def settle(server: Server, timeout: float = 120.0) -> int:
    """Wait until the server is idle (nothing in flight, or the flushers' count unchanged for 3 s):
    the abandoned requests of the last slice are committed. Returns the ticks the flushers wrote."""
    deadline = time.monotonic() + timeout
    last, stable = None, 0
    while time.monotonic() < deadline:
        written = server.flusher()["ticksWritten"]
        in_flight = server.get_json("/ops/health/supervisor")["admission"]["inFlightTicks"]
        stable = stable + 1 if written == last else 0
        if (in_flight == 0 and stable >= 1) or stable >= 15:
            return written
        last = written
        time.sleep(0.2)
    raise RuntimeError(f"the server kept writing for {timeout:g} s after the load stopped")


def run_ingest(admin_dsn: str, *, slices: int, slice_seconds: int, conns: int, batch: int, symbols: int,
               span: float, dedupe_max_keys: int, copy_ticks: int, tag: str) -> dict:
    """Part 1 on a fresh database: the COPY reference, then ``slices`` wrk slices back to back."""
    out: dict = {"slices": [], "config": {"slices": slices, "slice_seconds": slice_seconds, "conns": conns,
                                          "batch": batch, "symbols": symbols, "span_seconds": span,
                                          "dedupe_max_keys": dedupe_max_keys}}
    with temp_database(admin_dsn, prefix="cw_bench_pgscale") as dsn:
        out["copy"] = copy_reference(dsn, copy_ticks, symbols, tag)
        log(f"  raw COPY reference: {out['copy']['rate']:,.0f} rows/s ({out['copy']['ticks']:,} rows)")
        with Server(database_url=dsn, env={"DEDUPE_MAX_KEYS": str(dedupe_max_keys)}, keep_log=True) as server, \
                Pg(dsn) as pg:
            out["server_log"] = server.log_path
            out["postgres"] = server_facts(pg)
            table = raw_table(pg)
            if table is None:
                raise RuntimeError("no raw tick table found in the schema")
            out["raw_table"] = table
            warm = server.post_ticks([{"idempotencyKey": f"{tag}-warm-{i}", "symbol": f"B{i:05d}", "price": 100.0,
                                       "ts": time.time(), "volume": 1.0} for i in range(symbols)])["accepted"]
            written0 = server.flusher()["ticksWritten"]
            rows0 = inserted(pg, table)
            for i in range(slices):
                s = run_slice(server, conns=conns, batch=batch, symbols=symbols, span=span, prefix=f"{tag}-s{i}",
                              seconds=slice_seconds, pg=pg)
                rows = inserted(pg, table)
                s["rows_inserted"], rows0 = rows - rows0, rows
                s["rows_per_s"] = s["rows_inserted"] / s["seconds"] if s["seconds"] else 0.0
                s["rss_mb"] = server_rss_mb(server)
                out["slices"].append(s)
                lat, us = s["latency"], s["us_per_tick"]
                log(f"  slice {i + 1}/{slices}: {s['rate']:,.0f} ticks/s acked ({s['rows_per_s']:,.0f} rows/s stored), "
                    f"ack p50 {lat['p50_ms']:.0f} p90 {lat['p90_ms']:.0f} p99 {lat['p99_ms']:.0f} ms, "
                    f"Postgres {us.get('postgres', 0):.2f} us/tick, server {us.get('server', 0):.2f} us/tick, "
                    f"skipped {s['skipped']}, bad {s['bad_status']}, wrk errors {sum(s['wrk_errors'].values())}")
            written = settle(server)
            count = int(pg.val(f"SELECT count(*) FROM {table}", timeout=600))
            out["sizes"] = sizes(pg, table)
    acked = sum(s["accepted"] for s in out["slices"])
    sent = sum(s["sent_ticks"] for s in out["slices"])
    applied = written - written0
    out["end"] = {"rows": count, "warm_up": warm, "acknowledged": acked, "applied": applied, "sent": sent,
                  "flusher_ticks_written": written}
    out["checks"] = {
        "rows_equal_flushed": {"ok": count == written, "rule": "count(*) of the raw table == ticks the flushers wrote"},
        "acked_le_applied_le_sent": {"ok": acked <= applied <= sent,
                                     "rule": "acknowledged <= applied <= sent (wrk abandons requests in flight)"},
    }
    return out


def server_rss_mb(server: Server) -> float | None:
    from candlewick.runtime import pid_rss_bytes

    rss = pid_rss_bytes(server.pid).get("VmRSS")
    return rss / 2**20 if rss is not None else None


def summarize(ingest: dict) -> dict:
    """The issue's figures: first vs last slice, CPU per stored tick over the run, durable / COPY."""
    sl = ingest["slices"]
    first, last = sl[0], sl[-1]
    pg_seconds = sum(s["cpu"].get("postgres_cores", 0.0) * s["cpu_window_s"] for s in sl)
    server_seconds = sum(s["cpu"].get("server_cores", 0.0) * s["cpu_window_s"] for s in sl)
    applied = ingest["end"]["applied"]
    seconds = sum(s["seconds"] for s in sl)
    rate = ingest["end"]["acknowledged"] / seconds if seconds else 0.0
    return {"first_rate": first["rate"], "last_rate": last["rate"],
            "rate_ratio": last["rate"] / first["rate"] if first["rate"] else None,
            "first_p99_ms": first["latency"]["p99_ms"], "last_p99_ms": last["latency"]["p99_ms"],
            "p99_ratio": last["latency"]["p99_ms"] / first["latency"]["p99_ms"] if first["latency"]["p99_ms"] else None,
            "postgres_us_per_tick": pg_seconds / applied * 1e6 if applied else None,
            "server_us_per_tick": server_seconds / applied * 1e6 if applied else None,
            "mean_rate": rate, "of_copy": rate / ingest["copy"]["rate"] if ingest["copy"]["rate"] else None,
            "rows": ingest["end"]["rows"], "bytes": ingest["sizes"]["total"],
            "bytes_per_row": ingest["sizes"]["total"] / ingest["end"]["rows"] if ingest["end"]["rows"] else None}
