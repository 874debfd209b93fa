"""The Postgres store under the real server: durable acks, recovery, outages, a slow database."""

from __future__ import annotations

import time

import asyncpg
import pytest
import trio
from trio_asyncio import aio_as_trio

from tests.conftest import start_live_server, stored_key

M0 = (int(time.time()) // 60 - 30) * 60


def item(symbol, price, ts, key, volume=1.0):
    return {"symbol": symbol, "price": price, "ts": ts, "volume": volume, "idempotencyKey": key}


async def sql(url: str, query: str, *args):
    async def run():
        con = await asyncpg.connect(url)
        try:
            return await con.fetch(query, *args)
        finally:
            await con.close()
    return await aio_as_trio(run)()


async def sql_script(url: str, script: str) -> None:
    """Several statements at once (DDL), on a fresh connection."""
    async def run():
        con = await asyncpg.connect(url)
        try:
            await con.execute(script)
        finally:
            await con.close()
    await aio_as_trio(run)()


async def stop(live) -> None:
    await live.client.aclose()
    live.running.stop()
    with trio.fail_after(15):
        await live.engine.wait_stopped()


async def test_ack_means_committed_and_replays_count_once(nursery, aio, pg_url):
    """A 202 is sent only once the ticks are in Postgres; re-posting the batch changes nothing."""
    live = await start_live_server(nursery, database_url=pg_url)
    batch = [item("DUR", 100 + i, M0 + 7 * i, f"d{i}", 0.5) for i in range(40)]
    r = await live.post_ticks(batch)
    assert r.json()["accepted"] == 40
    [[count]] = await sql(pg_url, "SELECT count(*) FROM ticks WHERE symbol = 'DUR'")
    assert count == 40  # visible to another connection the moment the 202 arrived
    for _ in range(10):
        again = (await live.post_ticks(batch)).json()
        assert (again["accepted"], again["duplicates"]) == (0, 40)
    rows = await sql(pg_url, "SELECT sum(count), sum(volume) FROM ohlc_1m "
                            "WHERE symbol_id = (SELECT id FROM symbols WHERE symbol = 'DUR')")
    assert (rows[0][0], rows[0][1]) == (40, 20.0)
    await stop(live)


async def test_restart_rebuilds_book_from_database(nursery, aio, pg_url):
    """A new process on the same database dedupes old keys and continues candles and SMA10 exactly."""
    first = await start_live_server(nursery, database_url=pg_url)
    closes = [100 + (i * 7) % 11 for i in range(12)]
    batch = [item("REC", c, M0 + 60 * i + 10, f"r{i}") for i, c in enumerate(closes)]
    assert (await first.post_ticks(batch)).json()["accepted"] == 12
    await stop(first)

    second = await start_live_server(nursery, database_url=pg_url)
    assert (await second.post_ticks(batch)).json()["duplicates"] == 12
    r = await second.post_ticks([item("REC", 200, M0 + 60 * 11 + 20, "r-late")])
    assert r.json()["accepted"] == 1
    candles = (await second.client.get(second.url("/api/v1/ticks/REC/history"),
                                       params={"view": "ohlc1m"})).json()["items"]
    closes[-1] = 200
    assert [c["close"] for c in candles] == closes
    assert candles[-1]["count"] == 2 and candles[-1]["open"] == 100 + (11 * 7) % 11  # the pre-restart open
    assert candles[-1]["sma10"] == pytest.approx(sum(closes[2:12]) / 10)
    latest = (await second.client.get(second.url("/api/v1/ticks/REC"))).json()
    assert latest["price"] == 200
    await stop(second)


class Proxy:
    """A TCP proxy to the real Postgres that can be switched off: a database that is down."""

    def __init__(self, target=("127.0.0.1", 5432)):
        self.target = target
        self.up = False
        self.port = 0
        self._conns: set[trio.CancelScope] = set()

    async def run(self, task_status=trio.TASK_STATUS_IGNORED):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self)
        await trio.serve_listeners(self._handle, listeners)

    def down(self):
        self.up = False
        for scope in list(self._conns):
            scope.cancel()

    async def _handle(self, client):
        if not self.up:
            await client.aclose()
            return
        with trio.CancelScope() as scope:
            self._conns.add(scope)
            try:
                server = await trio.open_tcp_stream(*self.target)
                async with client, server, trio.open_nursery() as n:
                    n.start_soon(self._pipe, client, server)
                    n.start_soon(self._pipe, server, client)
            finally:
                self._conns.discard(scope)

    @staticmethod
    async def _pipe(src, dst):
        try:
            while data := await src.receive_some(65536):
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.move_on_after(1, shield=True):
                await dst.aclose()


async def test_database_down_at_start_then_back(nursery, aio, pg_url):
    """Down at start: readiness 503 with db: fail and ticks refused with 503; when it returns, ready and applied."""
    proxy = await nursery.start(Proxy().run)
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    live = await start_live_server(nursery, database_url=url, ack_deadline=1.0)
    ready = await live.client.get(live.url("/health/readiness"))
    assert ready.status_code == 503
    assert ready.json() == {"status": "not_ready", "checks": {"engine": "ok", "db": "fail", "redis": "off"}}
    batch = [item("DOWN", 1 + i, M0 + i, f"x{i}") for i in range(5)]
    r = await live.post_ticks(batch)
    assert r.status_code == 503 and r.json()["error"]["code"] == "STORE_UNAVAILABLE"
    assert r.headers["retry-after"]
    for path in ("/api/v1/ticks/DOWN", "/api/v1/ticks/DOWN/history?view=ohlc1m", "/api/v1/symbols"):
        read = await live.client.get(live.url(path))
        assert read.status_code == 503 and read.json()["error"]["code"] == "STORE_UNAVAILABLE", path
    proxy.up = True
    with trio.fail_after(20):
        while (await live.client.get(live.url("/health/readiness"))).status_code != 200:
            await trio.sleep(0.1)
        while (r := await live.post_ticks(batch)).status_code != 202:
            await trio.sleep(0.1)
    assert r.json()["accepted"] == 5  # the refused attempt spent no key
    [[count]] = await sql(pg_url, "SELECT count(*) FROM ticks_raw")
    assert count == 5
    await stop(live)


async def test_connection_lost_mid_stream_heals(nursery, aio, pg_url):
    """Cutting every database connection answers 503 while down, then the pool heals and nothing is doubled."""
    proxy = await nursery.start(Proxy().run)
    proxy.up = True
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    live = await start_live_server(nursery, database_url=url, ack_deadline=1.0)
    ok = [item("HEAL", 1 + i, M0 + i, f"h{i}") for i in range(10)]
    assert (await live.post_ticks(ok)).json()["accepted"] == 10
    proxy.down()
    later = [item("HEAL", 50 + i, M0 + 50 + i, f"l{i}") for i in range(10)]
    assert (await live.post_ticks(later)).status_code == 503
    proxy.up = True
    with trio.fail_after(20):
        while (r := await live.post_ticks(later)).status_code != 202:
            await trio.sleep(0.1)
    assert r.json()["accepted"] == 10
    [[raw]] = await sql(pg_url, "SELECT count(*) FROM ticks_raw")
    [[agg]] = await sql(pg_url, "SELECT sum(count) FROM ohlc_1m")
    assert raw == agg == 20
    await stop(live)


async def test_slow_database_backpressure_then_503_bounded_memory(nursery, aio, pg_url):
    """A database that stops committing makes requests wait, then 503; in-flight ticks stay at their bound;
    when it recovers the same requests are applied."""
    live = await start_live_server(nursery, database_url=pg_url, ack_deadline=1.5, ingest_deadline=1.0,
                                   max_in_flight_ticks=500)
    assert (await live.post_ticks([item("SLOW", 1, M0, "warm")])).status_code == 202

    async def hold_lock(release: trio.Event, locked: trio.Event):
        async def run():
            con = await asyncpg.connect(pg_url)
            tr = con.transaction()
            await tr.start()
            await con.execute("LOCK TABLE ticks_raw IN ACCESS EXCLUSIVE MODE")
            return con, tr
        con, tr = await aio_as_trio(run)()
        locked.set()
        await release.wait()

        async def done():
            await tr.rollback()
            await con.close()
        await aio_as_trio(done)()

    release, locked = trio.Event(), trio.Event()
    nursery.start_soon(hold_lock, release, locked)
    await locked.wait()
    statuses = []
    peak = []

    async def client(n):
        batch = [item(f"SLOW{n}", 1 + i, M0 + i, f"s{n}-{i}") for i in range(200)]
        statuses.append((await live.post_ticks(batch)).status_code)
        peak.append(live.engine.router.admission.peak)

    started = time.perf_counter()
    async with trio.open_nursery() as clients:
        for n in range(6):
            clients.start_soon(client, n)
    waited = time.perf_counter() - started
    assert sorted(statuses) == [503] * 6
    assert waited >= 1.0
    assert live.engine.router.admission.peak <= 500
    release.set()
    with trio.fail_after(20):
        for n in range(6):
            batch = [item(f"SLOW{n}", 1 + i, M0 + i, f"s{n}-{i}") for i in range(200)]
            while (r := await live.post_ticks(batch)).status_code != 202:
                await trio.sleep(0.1)
            assert r.json()["accepted"] == 200
    [[count]] = await sql(pg_url, "SELECT count(*) FROM ticks_raw")
    assert count == 1 + 6 * 200
    await stop(live)


# -- the write paths: fast (COPY straight into ticks_raw) and exact (ON CONFLICT DO NOTHING RETURNING) ----
def _book_bars(ticks):
    """Reference bars from the book's own arithmetic (Bar.add), ticks in applied order."""
    from candlewick.domain import bucket_of
    from candlewick.schema import Bar

    bars = {}
    for t in ticks:
        key = (t.symbol, bucket_of(t.ts))
        bar = bars.get(key)
        if bar is None:
            bars[key] = Bar(key[1], t.price, t.ts, t.volume)
        else:
            bar.add(t.price, t.ts, t.volume)
    return bars


def _tie_heavy_ticks(rng, symbols, n, tag, t0):
    """Out-of-order trade times with many exact ties, several minutes per symbol."""
    from candlewick.schema import Tick

    return [Tick(f"{tag}:{i}", rng.choice(symbols), float(rng.randint(1, 60)), t0 + rng.randint(0, 40) * 7.5,
                 float(rng.randint(0, 8)) / 4) for i in range(n)]


async def _stored_bars(url):
    rows = await sql(url, "SELECT s.symbol, o.bucket_start, o.open, o.open_ts, o.high, o.low, o.close, o.close_ts, "
                          "o.count, o.volume, o.pv, o.psum FROM ohlc_1m o JOIN symbols s ON s.id = o.symbol_id")
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def _bar_tuple(bar):
    return (bar.open, bar.open_ts, bar.high, bar.low, bar.close, bar.close_ts, bar.count, bar.volume, bar.pv, bar.psum)


async def test_fast_path_aggregates_equal_the_book_and_sql_with_ties(aio, pg_url):
    """Batches that cross minutes, arrive out of trade-time order and hold exact ties: the bars merged
    from the store's own aggregation equal the book's (Bar.add in applied order) and a recomputation
    from ticks_raw in SQL (ties by seq), with no flush taking the exact path."""
    import random

    from candlewick.storage.postgres import PostgresStore
    from tests.integration.test_pg_faults import assert_aggregates_match_raw

    rng = random.Random(3)
    ticks = _tie_heavy_ticks(rng, ["TA", "TB", "TC"], 3000, "fast", M0)
    store = PostgresStore(pg_url)
    await store.open()
    try:
        for i in range(0, len(ticks), 250):  # per-symbol lists in applied order, as the flusher hands them over
            batch = {}
            for t in ticks[i:i + 250]:
                batch.setdefault(t.symbol, []).append(t)
            await store.write(batch)
        assert (store.fast_writes, store.exact_writes) == (12, 0)
    finally:
        await store.close()
    [[count]] = await sql(pg_url, "SELECT count(*) FROM ticks_raw")
    assert count == len(ticks)
    await assert_aggregates_match_raw(pg_url)
    want = _book_bars(ticks)
    got = await _stored_bars(pg_url)
    assert set(got) == set(want)
    for key, bar in want.items():
        g, w = got[key], _bar_tuple(bar)
        assert g[:7] == w[:7], (key, g, w)  # open/close by trade time with ties, high, low, count: exact
        assert g[7:] == pytest.approx(w[7:], rel=1e-12), (key, g, w)  # sums: same terms, other grouping


async def test_a_batch_holding_stored_keys_takes_the_exact_path_and_counts_only_new_ticks(aio, pg_url):
    """A write whose batch repeats already-stored keys (a retry after a commit whose answer was lost)
    rolls the fast path back whole and is written by the exact path: stored ticks stay once, only the
    new ones reach the aggregates, and re-writing the same batch again changes nothing. The next few
    flushes skip the fast attempt; then it is tried again."""
    import random

    from candlewick.storage.postgres import EXACT_AFTER_DUPLICATE, PostgresStore
    from tests.integration.test_pg_faults import assert_aggregates_match_raw

    rng = random.Random(4)
    first = _tie_heavy_ticks(rng, ["XA", "XB"], 400, "x", M0)
    second = first[100:300] + _tie_heavy_ticks(rng, ["XA", "XB"], 300, "y", M0)

    def by_symbol(ticks):
        batch = {}
        for t in ticks:
            batch.setdefault(t.symbol, []).append(t)
        return batch

    store = PostgresStore(pg_url)
    await store.open()
    try:
        await store.write(by_symbol(first))
        assert (store.fast_writes, store.exact_writes) == (1, 0)
        await store.write(by_symbol(second))
        assert (store.fast_writes, store.exact_writes) == (1, 1)
        before = await _stored_bars(pg_url)
        await store.write(by_symbol(second))  # a replay: every key stored, nothing changes
        assert (store.fast_writes, store.exact_writes) == (1, 2)
        assert await _stored_bars(pg_url) == before
        # after a duplicate the next flushes go straight to the exact path, then the fast one again
        fresh = _tie_heavy_ticks(rng, ["XA", "XB"], 10 * EXACT_AFTER_DUPLICATE, "z", M0)
        for i in range(0, len(fresh), 10):
            await store.write(by_symbol(fresh[i:i + 10]))
        # the replay above used the first skip: the rest of the skips, then one fast write
        assert (store.fast_writes, store.exact_writes) == (1 + 1, 2 + EXACT_AFTER_DUPLICATE - 1)
    finally:
        await store.close()
    [[count]] = await sql(pg_url, "SELECT count(*) FROM ticks_raw")
    assert count == 700 + len(fresh)
    await assert_aggregates_match_raw(pg_url)
    [[total]] = await sql(pg_url, "SELECT sum(count) FROM ohlc_1m")
    assert total == 700 + len(fresh)


SLOW_COMMIT = """
CREATE FUNCTION cw_test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_sleep(0.6); RETURN NEW; END $$;
CREATE CONSTRAINT TRIGGER cw_test_slow_commit AFTER INSERT ON ticks_raw
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cw_test_slow_commit();
"""


SLOW_INSERT = """
CREATE TRIGGER cw_test_slow_insert BEFORE INSERT ON ticks_raw FOR EACH ROW EXECUTE FUNCTION cw_test_slow_commit();
"""


@pytest.mark.parametrize("path", ["fast", "exact"])
async def test_a_write_cancelled_while_its_commit_runs_reports_the_commit(aio, pg_url, path):
    """The flusher gives each write a deadline. A deadline that falls while the server is committing
    (here a deferred trigger makes COMMIT take 0.6 s) must not turn a stored flush into a failure (its
    requests would be answered 503 although their ticks are kept): the write returns as committed."""
    from candlewick.schema import Tick
    from candlewick.storage.postgres import PostgresStore

    store = PostgresStore(pg_url)
    await store.open()
    try:
        if path == "exact":  # a stored key sends the batch down the exact path
            await store.write({"SC": [Tick("sc-0", "SC", 1.0, M0, 1.0)]})
        await sql_script(pg_url, SLOW_COMMIT)
        batch = {"SC": [Tick("sc-0", "SC", 1.0, M0, 1.0), Tick("sc-1", "SC", 2.0, M0 + 1, 1.0)]}
        started = time.perf_counter()
        with trio.move_on_after(0.2) as deadline:
            await store.write(batch)
        assert not deadline.cancelled_caught, "the write was reported as failed, yet its COMMIT was under way"
        assert time.perf_counter() - started >= 0.6  # it waited for the COMMIT's outcome
        rows = await sql(pg_url, "SELECT idempotency_key FROM ticks WHERE symbol = 'SC'")
        assert sorted(r[0] for r in rows) == sorted([stored_key("sc-0"), stored_key("sc-1")])
        # cancelled before its COMMIT (here: while its rows are written), a write rolls back: not stored
        await sql_script(pg_url, SLOW_INSERT)
        with trio.move_on_after(0.2) as early:
            await store.write({"SC": [Tick("sc-2", "SC", 3.0, M0 + 2, 1.0)]})
        assert early.cancelled_caught
        rows = await sql(pg_url, "SELECT count(*) FROM ticks WHERE symbol = 'SC'")
        assert rows[0][0] == 2
        await sql_script(pg_url, "DROP TRIGGER cw_test_slow_insert ON ticks_raw; "
                                 "DROP TRIGGER cw_test_slow_commit ON ticks_raw")
        await store.write({"SC": [Tick("sc-3", "SC", 4.0, M0 + 3, 1.0)]})  # the store still works after it
        rows = await sql(pg_url, "SELECT count(*) FROM ticks WHERE symbol = 'SC'")
        assert rows[0][0] == 3
    finally:
        await sql_script(pg_url, "DROP TRIGGER IF EXISTS cw_test_slow_commit ON ticks_raw; "
                                 "DROP TRIGGER IF EXISTS cw_test_slow_insert ON ticks_raw; "
                                 "DROP FUNCTION IF EXISTS cw_test_slow_commit() CASCADE")
        await store.close()


@pytest.mark.parametrize("fault", ["missing database", "unknown role", "nothing listening"])
async def test_reads_answer_503_whatever_keeps_the_database_away_and_the_cause_is_logged_once(
        nursery, pg_url, caplog, fault):
    """A database that is missing, refuses the role, or is not there at all: every read answers 503
    STORE_UNAVAILABLE with Retry-After (never 500), and the log names the cause once, not per request."""
    import logging

    from tests.conftest import free_port

    server = pg_url.rsplit("/", 1)[0]
    url = {"missing database": server + "/cw_no_such_database",
           "unknown role": pg_url.replace("://", "://cw_no_such_role@", 1),
           "nothing listening": f"postgresql://127.0.0.1:{free_port()}/cw"}[fault]
    caplog.set_level(logging.INFO)
    live = await start_live_server(nursery, database_url=url)
    try:
        for _ in range(2):
            for path in ("/api/v1/ticks/A", "/api/v1/ticks/A/history", "/api/v1/ticks/A/history?view=ohlc1m",
                         "/api/v1/ticks/A/history?view=ohlc1m&interval=1h", "/api/v1/metrics/A",
                         "/api/v1/metrics/A?window=300", "/api/v1/symbols"):
                r = await live.client.get(live.url(path))
                assert r.status_code == 503, (path, r.status_code, r.text)
                assert r.json()["error"]["code"] == "STORE_UNAVAILABLE", (path, r.text)
                assert int(r.headers["retry-after"]) > 0
        causes = [rec.msg["error"] for rec in caplog.records
                  if isinstance(rec.msg, dict) and rec.msg.get("event") == "database_unavailable"]
        assert len(causes) == 1, causes
    finally:
        await stop(live)
