"""pgscale part 3: a raw-tick partition past retention disappears within one maintenance period, ingest p99 during the drop vs before.

Only when the schema partitions the raw table by range of one time column and the configuration
has a Postgres raw-retention setting and a maintenance-period setting (read from
``candlewick.config.SETTINGS`` at run time); otherwise the part reports why it did not run.

On a fresh database the server runs with retention 2 days and a short maintenance period, under
the seed-style load in wrk slices. After the "before" slices, a partition of the raw table's own
grid lying wholly past retention is made (named like the engine's partitions when their names show
their dates), filled with copies of current rows moved back in time, and attached while a slice
runs. Then the partition is polled every 0.1 s until it is gone from the table; one more slice
follows. The slice during which it went is compared with the slices before.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time

from bench._pg import temp_database
from bench._pgscale_db import Pg, bound_literal, is_partition_of, migrate, range_partitions, raw_table
from bench._pgscale_ingest import WrkSlice, run_slice
from bench._results import log
from bench._server import Server

RETENTION_DAYS = 2
SCALES = (1.0, 1e-3, 1e-6, 60.0, 3600.0, 86_400.0)
"""Candidate epoch seconds per unit of a numeric partition key: s, ms, us, minutes, hours, days."""


def settings() -> tuple[dict | None, str | None]:
    """({"retention": field, "maintenance": field, defaults}, None), or (None, why not)."""
    import attrs

    from candlewick import config

    fields = list(config.SETTINGS)
    retention = next((f for f in fields if f == "pg_retention_raw"), None) or next(
        (f for f in fields if "retention" in f and "raw" in f and ("pg" in f or "postgres" in f)), None)
    maintenance = next((f for f in fields if "maint" in f), None) or next(
        (f for f in fields if "partition" in f and any(w in f for w in ("interval", "period", "every", "check"))), None)
    if retention is None or maintenance is None:
        missing = [name for name, f in (("a Postgres raw retention (PG_RETENTION_RAW)", retention),
                                        ("a maintenance period", maintenance)) if f is None]
        return None, "the configuration has no setting for " + " or ".join(missing)
    defaults = {f.name: f.default for f in attrs.fields(config.Config)}
    return {"retention": retention, "maintenance": maintenance, "retention_default": defaults.get(retention),
            "maintenance_default": defaults.get(maintenance)}, None


def setting_value(field: str, candidates: list[str]) -> str | None:
    """The first candidate text the setting accepts."""
    from candlewick import config

    for raw in candidates:
        try:
            config.SETTINGS[field].read(config.env_name(field), raw)
            return raw
        except Exception:  # noqa: BLE001 - BadSetting: try the next spelling
            continue
    return None


def retention_texts(default) -> list[str]:
    """Spellings of 2 days, the likeliest first given the setting's default (a number below an
    hour is taken to count days)."""
    seconds, days = str(RETENTION_DAYS * 86_400), str(RETENTION_DAYS)
    if isinstance(default, (int, float)) and not isinstance(default, bool) and default < 3600:
        return [days, f"{days}d"]
    return [seconds, f"{days}d", f"{RETENTION_DAYS * 24}h"]


def grid(pg: Pg, table: str) -> dict:
    """The raw table's partition grid: key, epoch seconds per key unit, width, the partition
    holding now. ValueError when it is not a time range grid with such a partition."""
    info = range_partitions(pg, table)
    if info is None or not info["parts"]:
        raise ValueError(f"{table} is not partitioned" if info is None else f"{table} has no range partition")
    now = time.time()
    lo0 = info["parts"][0][0]
    scale = 1.0 if info["timestamp"] else next((s for s in SCALES if abs(lo0 * s - now) < 400 * 86_400), None)
    if scale is None:
        raise ValueError(f"cannot tell the time unit of {info['key']} ({info['type']}) from the bound {lo0}")
    current = next((p for p in info["parts"] if p[0] * scale <= now < p[1] * scale), None)
    if current is None:
        raise ValueError("no partition holds the current time")
    return {**info, "scale": scale, "width": min(hi - lo for lo, hi, _ in info["parts"]), "current": current,
            "lowers": {lo for lo, _, _ in info["parts"]}}


def old_partition(g: dict, retention_s: float) -> dict:
    """A partition of the grid wholly older than retention by at least one width, with its name."""
    lo, _, name = g["current"]
    width_s = g["width"] * g["scale"]
    k = 1
    while (lo - k * g["width"]) * g["scale"] + width_s > time.time() - retention_s - width_s or \
            lo - k * g["width"] in g["lowers"]:
        k += 1
    new_lo = lo - k * g["width"]
    when, then = (dt.datetime.fromtimestamp(x * g["scale"], dt.timezone.utc) for x in (lo, new_lo))
    new_name = None
    for fmt in ("%Y%m%d_%H%M%S", "%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d%H", "%Y%m%d", "%Y_%m_%d", "%Y-%m-%d"):
        if when.strftime(fmt) in name:
            new_name = name.replace(when.strftime(fmt), then.strftime(fmt))
            break
    if new_name is None and str(int(lo)) in name:
        new_name = name.replace(str(int(lo)), str(int(new_lo)))
    return {"name": new_name or f"{name}_pgscale_old", "named_like_engine": new_name is not None, "lo": new_lo,
            "hi": new_lo + g["width"], "shift": lo - new_lo, "age_days": (time.time() - (new_lo + g["width"]) *
                                                                          g["scale"]) / 86_400}


def make_old_partition(pg: Pg, table: str, g: dict, old: dict, rows: int) -> dict:
    """Create the partition's table (like the raw table) and fill it; returns the ATTACH statement."""
    cols = [r["attname"] for r in pg.fetch("""SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass
        AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum""", table)]
    key, shift = g["key"], old["shift"]
    moved = f'"{key}" - make_interval(secs => {shift})' if g["timestamp"] else f'"{key}" - {shift!r}'
    pg.execute(f"CREATE TABLE {old['name']} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
               "INCLUDING INDEXES INCLUDING GENERATED INCLUDING STORAGE)")
    names = ", ".join(f'"{c}"' for c in cols)
    exprs = ", ".join(moved if c == key else f'"{c}"' for c in cols)
    status = pg.execute(f"INSERT INTO {old['name']} ({names}) SELECT {exprs} FROM {g['current'][2]} LIMIT {rows}",
                        timeout=600)
    lo, hi = bound_literal(pg, g, old["lo"]), bound_literal(pg, g, old["hi"])
    return {"rows": int(status.rsplit(" ", 1)[1]),
            "attach": f"ALTER TABLE {table} ATTACH PARTITION {old['name']} FOR VALUES FROM ({lo}) TO ({hi})"}


def run_retention(admin_dsn: str, *, slice_seconds: int, before: int, maintenance_s: int, rows: int, conns: int,
                  batch: int, symbols: int, span: float, tag: str) -> dict:
    s, why = settings()
    if s is None:
        return {"available": False, "why": why}
    with temp_database(admin_dsn, prefix="cw_bench_pgscale_ret") as dsn:
        migrate(dsn)
        with Pg(dsn) as pg:
            table = raw_table(pg)
            try:
                info = range_partitions(pg, table) if table else None
            except ValueError as exc:
                return {"available": False, "why": f"{table}'s partitioning is not a time range: {exc}"}
            if info is None:
                return {"available": False, "why": f"the raw tick table ({table}) is not partitioned on this schema"}
            ret = setting_value(s["retention"], retention_texts(s["retention_default"]))
            maint = setting_value(s["maintenance"], [str(maintenance_s), f"{maintenance_s}s"])
            if ret is None or maint is None:
                return {"available": False, "why": f"{s['retention'].upper()} or {s['maintenance'].upper()} refused "
                                                   f"every spelling of {RETENTION_DAYS} days / {maintenance_s} s tried"}
            env = {s["retention"].upper(): ret, s["maintenance"].upper(): maint}
            out: dict = {"available": True, "env": env, "key": info["key"], "key_type": info["type"],
                         "maintenance_s": maintenance_s}
            load = dict(conns=conns, batch=batch, symbols=symbols, span=span, seconds=slice_seconds, pg=pg)
            with Server(database_url=dsn, env=env, keep_log=True) as server:
                out["server_log"] = server.log_path
                out["before"] = [run_slice(server, prefix=f"{tag}-rb{i}", **load) for i in range(before)]
                g = grid(pg, table)  # partitions made by the server, for the ticks it was sent
                out["partitions"] = [name for _, _, name in g["parts"]]
                out["width_s"] = g["width"] * g["scale"]
                old = old_partition(g, RETENTION_DAYS * 86_400)
                made = make_old_partition(pg, table, g, old, rows)
                out["partition"] = {**old, "rows": made["rows"]}
                log(f"  retention: partition {old['name']} ({old['age_days']:.1f} days old, {made['rows']:,} rows) "
                    f"attached under load; maintenance every {maintenance_s} s ({env})")
                out["during"], gone_at, attached_at = [], None, None
                limit = time.monotonic() + 3 * maintenance_s + 30
                while gone_at is None and time.monotonic() < limit:
                    w = WrkSlice(server, prefix=f"{tag}-rd{len(out['during'])}", **load).start()
                    if attached_at is None:
                        time.sleep(min(1.0, slice_seconds / 3))
                        t = time.time()
                        pg.execute(made["attach"], timeout=120)
                        attached_at = time.time()
                        out["attach_s"] = attached_at - t
                    while gone_at is None and w.proc.poll() is None:
                        if not is_partition_of(pg, table, old["name"]):
                            gone_at = time.time()
                        else:
                            time.sleep(0.1)
                    out["during"].append(w.finish())
                out["after"] = [run_slice(server, prefix=f"{tag}-ra", **load)] if gone_at else []
                out["table_still_exists"] = bool(pg.val("SELECT to_regclass($1) IS NOT NULL", old["name"]))
    return out | summarize(out, gone_at, attached_at, maintenance_s)


def summarize(out: dict, gone_at: float | None, attached_at: float | None, period: float) -> dict:
    before_p99 = [x["latency"]["p99_ms"] for x in out["before"]]
    res: dict = {"gone": gone_at is not None, "before_p99_ms": before_p99}
    if gone_at is None or attached_at is None:
        res["ok"] = False
        return res
    drop = next((x for x in out["during"] if x["started"] <= gone_at <= x["started"] + x["seconds"] + 1),
                out["during"][-1])
    res.update(gone_after_s=gone_at - attached_at, within_one_period=gone_at - attached_at <= period + 0.5,
               drop_slice_p99_ms=drop["latency"]["p99_ms"], drop_slice_max_ms=drop["latency"]["max_ms"],
               p99_vs_before=drop["latency"]["p99_ms"] / statistics.median(before_p99))
    res["ok"] = res["within_one_period"]
    return res
