"""A trade file (CSV or Parquet): its format, its identity (a content hash), its rows in chunks from any row on.

The columns, by header name: ``symbol``, ``ts``, ``price`` (required), ``volume`` (0 if absent or
empty) and ``key`` or ``idempotencyKey`` (optional; an empty cell is no key); other columns are
ignored. CSV is read with pyarrow's multi-threaded reader, every column as text (then read as
numbers, with the webhook's rules, by ``_import_rows``); Parquet with its own types.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import xxhash

FORMATS = ("csv", "parquet")
REQUIRED = ("symbol", "ts", "price")
OPTIONAL = ("volume", "key", "idempotencyKey")
CSV_BLOCK = 4 << 20
"""Bytes of CSV parsed at a time (pyarrow parses a block on several threads)."""
HASH_PIECE = 8 << 20


class BadFile(ValueError):
    """The file cannot be read as trades: its format, its header, a malformed CSV line."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def detect_format(path: Path) -> str | None:
    """``csv`` or ``parquet`` from the file name (``.csv``, ``.csv.gz``, ``.parquet``, ``.pq``), else None."""
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".txt")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return None


def content_hash(path: Path) -> bytes:
    """The file's identity: XXH3-128 of its bytes (16 bytes). The same content has the same identity
    whatever its name; a changed file is another file."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while piece := f.read(HASH_PIECE):
            h.update(piece)
    return h.digest()


def _rechunk(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """The same rows in batches of exactly ``size`` (the last may be shorter)."""
    pending: list[pa.RecordBatch] = []
    have = 0
    for batch in batches:
        while batch.num_rows:
            take = min(size - have, batch.num_rows)
            pending.append(batch.slice(0, take))
            have += take
            batch = batch.slice(take)
            if have == size:
                yield _joined(pending)
                pending, have = [], 0
    if have:
        yield _joined(pending)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


class TradeFile:
    """One file of trades; ``chunks`` reads it from any row on, ``size`` rows at a time."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.format = fmt
        self.columns = self._columns()
        """The columns read, in file order."""
        self.rows_read = 0
        """Rows handed out by the last ``chunks`` so far, counted from its start row."""

    def _columns(self) -> list[str]:
        if self.format == "parquet":
            try:
                names = pq.ParquetFile(self.path).schema_arrow.names
            except (pa.ArrowException, OSError) as exc:
                raise BadFile(f"not a Parquet file: {exc}") from None
        else:
            try:
                with self._open_text() as f:
                    names = next(csv.reader([f.readline()]), [])
            except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
                raise BadFile(f"cannot read a CSV header row: {exc}") from None
        missing = [c for c in REQUIRED if c not in names]
        if missing:
            raise BadFile(f"the header must name the columns symbol, ts and price (volume and key or idempotencyKey "
                          f"are optional); missing: {', '.join(missing)}; found: {', '.join(names)[:300]}")
        if "key" in names and "idempotencyKey" in names:
            raise BadFile("the header names both key and idempotencyKey: keep one")
        return [c for c in names if c in REQUIRED or c in OPTIONAL]

    def row_count(self) -> int | None:
        """Rows in the file when its metadata says (Parquet), else None (CSV: count them by reading)."""
        if self.format == "parquet":
            return pq.ParquetFile(self.path).metadata.num_rows
        return None

    def chunks(self, size: int, start: int = 0, *, threads: bool = True) -> Iterator[pa.RecordBatch]:
        """Batches of ``size`` rows (the last may be shorter), from data row ``start`` (0-based) on.
        A malformed CSV line raises ``BadFile`` naming its line number. ``threads``: CSV is parsed on
        pyarrow's threads (faster alone; beside a busy database, one thread leaves it the cores)."""
        self.rows_read = 0
        source = self._parquet(start) if self.format == "parquet" else self._csv(start, threads)
        for batch in _rechunk(source, size):
            self.rows_read += batch.num_rows
            yield batch

    def _parquet(self, start: int) -> Iterator[pa.RecordBatch]:
        f = pq.ParquetFile(self.path)
        groups, skip = [], start
        for i in range(f.metadata.num_row_groups):
            n = f.metadata.row_group(i).num_rows
            if skip >= n and not groups:
                skip -= n
                continue
            groups.append(i)
        if not groups:
            return
        for batch in f.iter_batches(batch_size=64 * 1024, row_groups=groups, columns=self.columns):
            if skip:
                cut = min(skip, batch.num_rows)
                batch, skip = batch.slice(cut), skip - cut
            if batch.num_rows:
                yield batch

    def _csv(self, start: int, threads: bool) -> Iterator[pa.RecordBatch]:
        bad: list[str] = []

        def invalid(row) -> str:
            bad.append(row.text)
            return "error"

        def refused(exc: Exception) -> BadFile:
            text = bad[0] if bad else None
            line = self._line_of(text, start + self.rows_read + 2) if text is not None else None
            where = f"line {line}" if line is not None else f"after row {start + self.rows_read}"
            return BadFile(f"{where}: {str(exc).removeprefix('CSV parse error: ')}", line)

        try:
            reader = pcsv.open_csv(
                self.path, read_options=pcsv.ReadOptions(block_size=CSV_BLOCK, skip_rows_after_names=start, use_threads=threads),
                parse_options=pcsv.ParseOptions(invalid_row_handler=invalid),
                convert_options=pcsv.ConvertOptions(include_columns=self.columns, strings_can_be_null=True,
                                                    column_types={c: pa.string() for c in self.columns}))
        except pa.ArrowInvalid as exc:
            raise refused(exc) from None
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                raise refused(exc) from None
            yield batch

    def _open_text(self):
        opener = gzip.open if self.path.name.lower().endswith(".gz") else open
        return opener(self.path, "rt", encoding="utf-8-sig", errors="replace", newline="")

    def _line_of(self, text: str, earliest: int) -> int | None:
        """The number of the first line at or after line ``earliest`` that reads ``text`` (the error path only)."""
        with self._open_text() as f:
            for number, line in enumerate(f, 1):
                if number >= earliest and line.rstrip("\r\n") == text:
                    return number
        return None

    def line_of_row(self, row: int) -> int | None:
        """The line number of data row ``row`` (from 1) of a CSV file: blank lines are skipped, the
        header is the first line that is not blank (the error path only)."""
        if self.format != "csv":
            return None
        seen = -1
        with self._open_text() as f:
            for number, line in enumerate(f, 1):
                if line.strip("\r\n"):
                    seen += 1
                    if seen == row:
                        return number
        return None
