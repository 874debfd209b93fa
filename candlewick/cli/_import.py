"""``candlewick import FILE``: backfill trades from a CSV or Parquet file into Postgres, exactly once, resumable.

First the whole file is checked by the webhook's rules (an invalid row stops the import before
anything is applied), then it is applied in chunks of ``--batch`` rows, one transaction each,
which also records in a ledger how many rows of the file (known by a hash of its content) are
done: so a repeated or resumed import never applies a chunk twice, and re-running the same command
after Ctrl-C or a crash continues after the last committed chunk. Ticks a running engine still
holds in memory (newer than now - ``LATENESS``) go through its webhook (``--url``) or are refused.
See docs/ARCHITECTURE.md, "Backfill", and the README's ``candlewick import``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import structlog
import trio

from candlewick.cli._feed import URL, _flag
from candlewick.cli._import_file import FORMATS, BadFile, TradeFile, content_hash, detect_format
from candlewick.cli._import_live import LivePoster
from candlewick.cli._import_progress import ImportProgress
from candlewick.cli._import_rows import BadColumn, BadRow, Rows, check, tick_columns
from candlewick.config import COUNT, POSTGRES_URL, SECONDS, BadSetting, Config, choice, integer
from candlewick.errors import FeedGaveUp, FeedRefused, StoreUnavailable
from candlewick.schema import TickColumns

log = structlog.get_logger("candlewick.import")

DEFAULT_BATCH = 100_000
DEFAULT_PARALLEL = 2
"""Chunk transactions in flight: Postgres's work per row (the primary key, the candle merge) then
runs on two cores while this process reads the next chunks."""


class ImportFailed(Exception):
    """A failure reported as one ``event`` line with ``fields``, exit code 1."""

    def __init__(self, event: str, **fields: object) -> None:
        super().__init__(event)
        self.event = event
        self.fields = fields


def add_parser(sub) -> None:
    i = sub.add_parser("import", help="backfill trades from a CSV or Parquet file into Postgres (DATABASE_URL)",
                       description="Apply the trades of a CSV or Parquet file (columns symbol, ts, price, volume, "
                                   "optional key) to the database exactly once: raw ticks within raw retention, "
                                   "1-minute candles and every rollup. Resumable: run the same command again after "
                                   "an interruption. Exit 0 done, 1 failed (invalid row, database, server), "
                                   "2 bad flag or setting, 130 interrupted.")
    i.add_argument("file", help="the trade file: .csv (or .csv.gz) with a header row, or .parquet")
    i.add_argument("--format", help="csv or parquet (default: from the file name)")
    i.add_argument("--batch", help=f"rows per chunk, one transaction each, 1 or more (default {DEFAULT_BATCH:,})")
    i.add_argument("--parallel", help="chunks committed at the same time, each on its own connection, 1 or more "
                                      f"(default {DEFAULT_PARALLEL}; 1: one after another, in file order)")
    i.add_argument("--url", help="a running server's base URL: ticks newer than now - LATENESS are posted to its "
                                 "webhook (without it, a file holding such ticks is refused)")
    i.add_argument("--api-key", help="x-api-key for --url (env API_KEY, else the first of API_KEYS)")
    i.add_argument("--source", help="the source of ticks without a key: their key is the webhook's default "
                                    "text source:symbol:ts:price:volume (default import:<file name>)")
    i.add_argument("--lateness", help="the running engine's lateness horizon in seconds (env LATENESS, "
                                      "default 3600): newer ticks are not written to the database directly")
    i.add_argument("--retries", help="attempts again per request to --url that gets no answer or 429/5xx "
                                     "(default 8)")
    i.add_argument("--progress-every", help="seconds between import_progress lines when stderr is not a "
                                            "terminal (default 10; a terminal shows a bar)")
    i.set_defaults(handler=import_file)


def import_file(args: argparse.Namespace) -> int:
    path = Path(args.file)
    fmt = _flag(args.format, "--format", choice(*FORMATS), None) or detect_format(path)
    if fmt is None:
        raise BadSetting("--format", "", "csv or parquet (the file name does not say: .csv, .csv.gz, .parquet)")
    batch = _flag(args.batch, "--batch", COUNT, DEFAULT_BATCH)
    parallel = _flag(args.parallel, "--parallel", integer(1, 64), DEFAULT_PARALLEL)
    every = _flag(args.progress_every, "--progress-every", SECONDS, 10.0)
    retries = _flag(args.retries, "--retries", integer(0), 8)
    url = _flag(args.url, "--url", URL, None)
    config = Config.from_env(flags={"lateness": args.lateness})  # the server's settings: lateness, retention
    dsn = config.database_url
    if dsn is None:
        raise BadSetting("DATABASE_URL", "", "a postgresql:// URL: import writes to that database")
    key = None
    if url is not None:
        keys = config.api_keys
        key = args.api_key or os.environ.get("API_KEY") or (keys[0] if keys else None)  # type: ignore[index]
        if not key:
            raise BadSetting("--api-key", args.api_key or "", "the key the server at --url accepts: --api-key, or "
                                                               "API_KEY or API_KEYS in the environment")
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not path.is_file():
        log.error("import_failed", file=str(path), error="no such file")
        return 1
    progress = ImportProgress(tty=sys.stderr.isatty(), every=float(every))  # type: ignore[arg-type]
    job: Job | None = None
    try:
        job = Job(path, fmt, int(batch), int(parallel), args.source, config, url, key, int(retries),  # type: ignore[arg-type]
                  progress)
        return trio.run(job.main, str(dsn))
    except BaseException as raised:  # noqa: BLE001 - each known failure is one line; anything else goes on up
        exc = _leaf(raised)
        progress.clear()
        done = job.rows_done if job is not None else 0
        if isinstance(exc, ImportFailed):
            log.error(exc.event, file=str(path), **exc.fields)
        elif isinstance(exc, (BadFile, BadColumn)):
            log.error("import_refused", file=str(path), line=getattr(exc, "line", None), error=str(exc),
                      hint="nothing was applied: fix the file and run the command again")
        elif isinstance(exc, StoreUnavailable):
            log.error("import_failed", file=str(path), database=POSTGRES_URL.show(str(dsn)), error=str(exc),
                      rows_done=done, hint="check DATABASE_URL; run the same command again to continue")
        elif isinstance(exc, (FeedRefused, FeedGaveUp)):
            log.error("import_failed", file=str(path), url=url, error=str(exc), rows_done=done,
                      hint="run the same command again to continue")
        else:
            raise
        return 1


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member groups (trio's nurseries wrap what escapes them)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class Job:
    """One run of ``candlewick import``: the check, then the chunks, each posted and committed in turn."""

    def __init__(self, path: Path, fmt: str, batch: int, parallel: int, source: str | None, config: Config,
                 url: str | None, api_key: str | None, retries: int, progress: ImportProgress) -> None:
        self.file = TradeFile(path, fmt)
        self.path = path
        self.batch = batch
        self.parallel = parallel
        self.source = source or f"import:{path.name}"
        self.config = config
        self.lateness = config.lateness
        self.url = url
        self.api_key = api_key
        self.retries = retries
        self.progress = progress
        self.rows_done = 0
        self.started = time.monotonic()
        self.stopping = False
        """Set by Ctrl-C or SIGTERM: the worker threads stop reading (the task is cancelled)."""

    async def main(self, dsn: str) -> int:
        from candlewick.aio import open_aio_loop
        from candlewick.storage.pg_import import ImportTarget

        identity = await trio.to_thread.run_sync(content_hash, self.path)
        async with open_aio_loop():
            config = self.config
            target = ImportTarget(dsn, retention_raw=config.pg_retention_raw or None,
                                  retention_1m=config.pg_retention_1m or None, partition_raw=config.pg_partition_raw,
                                  connections=self.parallel)
            try:
                await target.open()
                async with trio.open_nursery() as nursery:
                    stopped = await nursery.start(_stop_on_signal, nursery.cancel_scope, self)
                    nursery.start_soon(self.progress.run)
                    outcome = await self._run(target, identity)
                    nursery.cancel_scope.cancel()
                if stopped.is_set():
                    return await self._interrupted(target, identity)
                return outcome
            finally:
                with trio.CancelScope(shield=True):
                    await target.close()

    async def _run(self, target, identity: bytes) -> int:
        entry = await target.ledger(identity)
        if entry is not None and entry.finished:
            log.info("import_already_done", file=str(self.path), rows=entry.rows_total, identity=identity.hex())
            return 0
        if entry is None:
            total = await self._check()
            entry = await target.begin(identity, self.path.name, self.source, self.batch, total)
        if (entry.source, entry.batch) != (self.source, self.batch):
            log.info("import_resumed_as_begun", source=entry.source, batch=entry.batch,
                     reason="a resumed import keeps the source (so default keys stay the same) and the chunks "
                            "it started with")
            self.source, self.batch = entry.source, entry.batch
        self.rows_done = entry.rows_done
        self.progress.clear()
        log.info("import_started", file=str(self.path), identity=identity.hex(), rows=entry.rows_total,
                 resume_at=entry.rows_done, batch=self.batch, parallel=self.parallel, source=self.source)
        await self._apply(target, identity, entry)
        await trio.lowlevel.checkpoint()  # stopped meanwhile: the cancellation goes on, the ledger is not finished
        if self.rows_done != entry.rows_total:  # the file is shorter than when it was checked
            raise ImportFailed("import_failed", rows_done=self.rows_done, rows=entry.rows_total,
                               error="the file has fewer rows than when it was checked: was it changed?")
        totals = await target.finish(identity)
        self.progress.clear()
        seconds = time.monotonic() - self.started
        log.info("import_done", file=str(self.path), rows=entry.rows_total, seconds=round(seconds, 1),
                 rate=round((entry.rows_total - entry.rows_done) / max(seconds, 1e-9)), **totals)
        return 0

    async def _check(self) -> int:
        """Read the whole file by the webhook's rules: the rows, or an ``ImportFailed`` before anything is applied."""
        file = self.file
        self.progress.start("checking", file.row_count() or 0)
        now = time.time()
        live_from = now - self.lateness

        def work() -> tuple[int, int]:
            rows = live = 0
            for chunk in file.chunks(self.batch):
                if self.stopping:  # the thread is not cancelled with the task: it looks
                    break
                try:
                    checked = check(chunk, rows, now)
                except BadRow as exc:
                    raise ImportFailed("import_invalid_row", row=exc.row, line=file.line_of_row(exc.row),
                                       field=exc.field, value=exc.value, error=f"{exc.field} {exc.why}",
                                       hint="nothing was applied: fix the file and run the command again") from None
                live += int(np.count_nonzero(checked.ts >= live_from))
                rows += len(checked)
                self.progress.done = rows
            return rows, live

        rows, live = await trio.to_thread.run_sync(work)
        await trio.lowlevel.checkpoint()  # stopped meanwhile: the cancellation, not a partial count, goes on
        if live and self.url is None:
            raise ImportFailed("import_refused", live_rows=live, live_from=live_from,
                               error=f"{live:,} rows are newer than now - LATENESS ({self.lateness:g} s): a running "
                                     "engine holds those minutes in memory, so they must go through its webhook",
                               hint="give --url and --api-key of the running server, or leave those rows out; "
                                    "nothing was applied")
        return rows

    async def _apply(self, target, identity: bytes, entry) -> None:
        """The chunks not done yet: each is read, checked, digested and made into the store's flush
        (threads, and the store for ids and partitions) while ``--parallel`` chunks commit."""
        file, batch, done = self.file, self.batch, entry.done
        self.progress.start("importing", entry.rows_total, self.rows_done)
        first = next(c for c in range(len(done) + 1) if c not in done) * batch  # the first chunk not done
        chunks = file.chunks(batch, first, threads=False)  # the database's work needs the cores now
        poster = LivePoster(self.url, self.api_key, self.source, retries=self.retries, on_retry=self._retrying) \
            if self.url is not None and self.api_key is not None else None

        def read_next() -> tuple[Rows, TickColumns, np.ndarray] | None:
            """The next chunk not done yet (a worker thread: it runs beside the commits)."""
            nonlocal first
            for chunk in chunks:
                if self.stopping:
                    return None
                start, first = first, first + chunk.num_rows
                if start // batch in done:  # committed by an earlier run: skipped, not even checked
                    continue
                now = time.time()
                try:
                    rows = check(chunk, start, now)
                except BadRow as exc:  # the file changed since it was checked
                    raise ImportFailed("import_invalid_row", row=exc.row, line=file.line_of_row(exc.row),
                                       field=exc.field, value=exc.value, error=f"{exc.field} {exc.why}",
                                       hint="this chunk was not applied: fix the file and import it again") from None
                cols = tick_columns(rows, self.source)
                return rows, cols, cols.ts >= now - self.lateness
            return None

        async def flush_of(cols: TickColumns, direct: np.ndarray):
            if not direct.any():
                return None, None
            flush = await target.flush(cols.take(direct) if not direct.all() else cols)
            return flush, await trio.to_thread.run_sync(target.prepare, flush)

        send, receive = trio.open_memory_channel(1)

        async def produce() -> None:
            async with send:
                while (item := await trio.to_thread.run_sync(read_next)) is not None:
                    rows, cols, live = item
                    await send.send((rows, cols, live, *await flush_of(cols, ~live)))

        async def commit(client: httpx.AsyncClient, receive) -> None:
            async with receive:
                async for rows, cols, live, flush, bars in receive:
                    sent = 0
                    if live.any():
                        if poster is None:  # time passed since the check: these rows became recent meanwhile
                            raise ImportFailed("import_refused", row=rows.first + int(live.argmax()) + 1,
                                               error="rows newer than now - LATENESS need --url and --api-key",
                                               rows_done=self.rows_done)
                        index = np.flatnonzero(live)
                        skipped = await poster.post(client, cols.symbols, cols.sym[index], cols.price[index],
                                                    cols.ts[index], cols.volume[index],
                                                    rows.keys.take(index) if rows.keys is not None else None)
                        sent = len(index) - int(skipped.sum())
                        if skipped.any():  # now older than the server's horizon: the database dedupes by key
                            direct = ~live
                            direct[index[skipped]] = True
                            flush, bars = await flush_of(cols, direct)
                    await target.apply(identity, rows.first // batch, len(rows), flush, bars, sent)
                    # applied now, or by a concurrent import of the same file: done either way
                    self.rows_done += len(rows)
                    self.progress.done = self.rows_done

        async with httpx.AsyncClient(timeout=30.0) as client, trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            async with receive:
                for _ in range(self.parallel):
                    nursery.start_soon(commit, client, receive.clone())

    def _retrying(self, retry) -> None:
        self.progress.clear()
        log.warning("server_unreachable" if retry.status == 0 else "import_retry", url=self.url,
                    status=retry.status or None, detail=retry.detail, attempt=retry.attempt, attempts=retry.attempts,
                    retry_in=retry.wait)

    async def _interrupted(self, target, identity: bytes) -> int:
        with trio.move_on_after(5, shield=True):
            entry = await target.ledger(identity)
            if entry is not None:
                self.rows_done = entry.rows_done
        self.progress.clear()
        log.warning("import_interrupted", file=str(self.path), rows_done=self.rows_done,
                    hint="run the same command again to continue after the last committed chunk")
        return 130


async def _stop_on_signal(scope: trio.CancelScope, job: Job, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Ctrl-C or SIGTERM: cancel ``scope`` (the import; the chunk in flight rolls back) and report it."""
    stopped = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started(stopped)
        async for _ in signals:
            job.stopping = True
            stopped.set()
            scope.cancel()
            return
