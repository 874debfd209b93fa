"""A chunk of a trade file checked by the webhook's rules, then made into ``TickColumns`` with key digests.

Everything is done a column at a time with pyarrow and numpy; Python runs per row only to report
an invalid one, for timestamps pyarrow cannot parse (checked then by the webhook's own
``parse_ts``) and for the few floats whose text pyarrow writes unlike Python's ``repr``. See
docs/ARCHITECTURE.md, "Backfill".
"""

from __future__ import annotations

import re
import attrs
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from candlewick.schema import SYMBOL_RE, TickColumns, parse_ts

MAX_KEY_LEN = 200
MAX_FUTURE_S = 300.0
"""As the webhook: a trade may be at most 5 minutes in the future."""

SYMBOL_RULE = "required, 1-32 characters of A-Z a-z 0-9 . - _ : /"
PRICE_RULE = "required finite number > 0"
VOLUME_RULE = "must be a finite number >= 0"
KEY_RULE = f"must be a string of 1 to {MAX_KEY_LEN} characters"
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class BadRow(ValueError):
    """An invalid row: ``row`` counts data rows from 1 (the header is not a row)."""

    def __init__(self, row: int, field: str, value: object, why: str) -> None:
        super().__init__(f"row {row}: {field} {why}")
        self.row = row
        self.field = field
        self.value = value
        self.why = why


class BadColumn(ValueError):
    """A column of a type that can never hold valid values (a Parquet ``price`` of booleans)."""


@attrs.frozen(eq=False)
class Rows:
    """A checked chunk: ``first`` is the 0-based index in the file of its first row."""

    first: int
    symbols: list[str]
    """The distinct symbols; ``sym`` indexes it."""
    sym: np.ndarray
    price: np.ndarray
    ts: np.ndarray
    volume: np.ndarray
    keys: pa.Array | None
    """The client's keys (null where a row has none), or None when the file has no key column."""

    def __len__(self) -> int:
        return len(self.ts)


def _bad_rows(mask: np.ndarray) -> int | None:
    """The index of the first True, or None."""
    if not mask.any():
        return None
    return int(mask.argmax())


def _numbers(column: pa.Array, name: str) -> tuple[np.ndarray, int | None]:
    """``column`` as float64 (NaN for nulls) and the first row whose text is not a number, if any."""
    t = column.type
    if pa.types.is_dictionary(t):
        column, t = column.cast(t.value_type), t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            values = pc.cast(column, pa.float64())
        except pa.ArrowInvalid:
            bad = _first_unparsable(column)
            out = np.ones(len(column))  # rows after the bad one pass: it is the one reported
            out[:bad] = pc.cast(column.slice(0, bad), pa.float64()).to_numpy(zero_copy_only=False)
            return out, bad
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        values = pc.cast(column, pa.float64(), safe=False)
    else:
        raise BadColumn(f"column {name} holds {t}, not numbers")
    return values.to_numpy(zero_copy_only=False), None


def _first_unparsable(column: pa.Array) -> int:
    """The first row of a text column that pyarrow cannot read as a number (bisecting: log n casts)."""
    lo, hi = 0, len(column)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(column.slice(lo, mid - lo), pa.float64())
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    return lo


def _timestamps(column: pa.Array, now: float) -> tuple[np.ndarray, dict[int, str]]:
    """Trade times as epoch seconds (NaN for nulls) and, by row, why a value is not one.

    Numbers are epoch seconds; text is a number or ISO-8601 with an offset. ISO text goes through
    pyarrow (microseconds kept, as ``datetime.timestamp``); a chunk pyarrow cannot read whole is
    read row by row with the webhook's ``parse_ts``. Timestamps without a zone are refused, as ISO
    text without an offset is."""
    t = column.type
    if pa.types.is_dictionary(t):
        column, t = column.cast(t.value_type), t.value_type
    if pa.types.is_timestamp(t):
        if t.tz is None:
            raise BadColumn("column ts holds timestamps without a time zone: store them as UTC "
                            "(timestamp with tz), or as epoch seconds")
        micros = pc.cast(column, pa.timestamp("us", tz=t.tz), safe=False).cast(pa.int64())
        return _micros_to_seconds(micros), {}
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        values, _ = _numbers(column, "ts")
        return values, {}
    try:
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), {}
    except pa.ArrowInvalid:
        pass
    try:
        micros = pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64())
        return _micros_to_seconds(micros), {}
    except pa.ArrowInvalid:
        pass
    out = np.full(len(column), np.nan)
    why: dict[int, str] = {}
    for i, text in enumerate(column.to_pylist()):
        if text is None:
            continue
        if _NUMBER.fullmatch(text):
            out[i] = float(text)
            continue
        ts, reason = parse_ts(text, now)
        if reason is not None:
            why[i] = reason
        else:
            out[i] = ts
    return out, why


def _micros_to_seconds(micros: pa.Array) -> np.ndarray:
    """Integer microseconds to float seconds, rounded once: what ``datetime.timestamp`` gives."""
    values = micros.to_numpy(zero_copy_only=False).astype(np.float64)  # exact below 2^53 us (year 2255)
    return values / 1e6


def _text(column: pa.Array, name: str) -> pa.Array:
    t = column.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise BadColumn(f"column {name} holds {t}, not text")
    return pc.cast(column, pa.string())


def check(batch: pa.RecordBatch, first: int, now: float) -> Rows:
    """The rows of ``batch`` (file rows ``first``, ``first + 1``, ...) as checked columns, or
    ``BadRow`` for the first invalid one (``BadColumn`` for a column that cannot hold values)."""
    problems: list[tuple[int, str, str]] = []

    def note(mask: np.ndarray, field: str, why: str) -> None:
        i = _bad_rows(mask)
        if i is not None:
            problems.append((i, field, why))

    names = batch.schema.names
    encoded = pc.dictionary_encode(_text(batch.column(names.index("symbol")), "symbol"))
    symbols = encoded.dictionary.to_pylist()
    sym_ok = np.fromiter((SYMBOL_RE.fullmatch(s) is not None for s in symbols), dtype=np.bool_, count=len(symbols))
    codes = encoded.indices
    note(np.asarray(codes.is_null()), "symbol", SYMBOL_RULE)
    sym = codes.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int32) if len(symbols) else \
        np.zeros(len(codes), np.int32)
    if len(symbols):
        note(~sym_ok[sym] & ~np.asarray(codes.is_null()), "symbol", SYMBOL_RULE)

    price, unparsable = _numbers(batch.column(names.index("price")), "price")
    if unparsable is not None:
        problems.append((unparsable, "price", PRICE_RULE))
    with np.errstate(invalid="ignore"):
        note(~(np.isfinite(price) & (price > 0)), "price", PRICE_RULE)

    if "volume" in names:
        column = batch.column(names.index("volume"))
        volume, unparsable = _numbers(column, "volume")
        if unparsable is not None:
            problems.append((unparsable, "volume", VOLUME_RULE))
        if column.null_count:
            volume = np.where(np.asarray(column.is_null()), 0.0, volume)  # as an absent or null volume in the webhook
    else:
        volume = np.zeros(len(price))
    with np.errstate(invalid="ignore"):
        note(~(np.isfinite(volume) & (volume >= 0)), "volume", VOLUME_RULE)

    column = batch.column(names.index("ts"))
    ts, why = _timestamps(column, now)
    if why:
        i = min(why)
        problems.append((i, "ts", why[i]))
    nulls = np.asarray(column.is_null())
    note(nulls, "ts", "required: epoch seconds or ISO-8601 string")
    with np.errstate(invalid="ignore"):
        note(~np.isfinite(ts) & ~nulls & _unflagged(len(ts), why), "ts",
             "must be a finite number of epoch seconds or an ISO-8601 string")
        note(ts < 0, "ts", "must not be before 1970")
        future = ts > now + MAX_FUTURE_S
        note(future & (ts > 1e11), "ts", "looks like milliseconds; send epoch seconds (divide by 1000)")
        note(future & (ts <= 1e11), "ts", "is more than 5 minutes in the future")

    keys = None
    key_name = "key" if "key" in names else "idempotencyKey" if "idempotencyKey" in names else None
    if key_name is not None:
        keys = _text(batch.column(names.index(key_name)), key_name)
        length = pc.utf8_length(keys).fill_null(1).to_numpy(zero_copy_only=False)
        note((length < 1) | (length > MAX_KEY_LEN), key_name, KEY_RULE)

    if problems:
        i, field, reason = min(problems)
        column = batch.column(names.index(field))
        raise BadRow(first + i + 1, field, column[i].as_py(), reason)
    return Rows(first, symbols, sym, price, ts, volume, keys)


def _unflagged(n: int, why: dict[int, str]) -> np.ndarray:
    mask = np.ones(n, dtype=np.bool_)
    if why:
        mask[list(why)] = False
    return mask


def float_texts(values: np.ndarray) -> pa.Array:
    """``repr`` of each float, as text, without a Python call per value.

    orjson writes a float64 array (``OPT_SERIALIZE_NUMPY``) in C with the shortest round-trip
    digits in ``repr``'s notation, except for magnitudes below 1e-4 (``0.00001`` for ``1e-05``):
    its output, split at the commas, is the text; those few values take ``repr``. Should an orjson
    release write floats otherwise (checked once, at import), pyarrow's text is fixed up instead.
    tests/unit/test_import_rows.py compares both with ``repr`` on a million values."""
    if not _ORJSON_IS_REPR:
        return _arrow_texts(values)
    body = orjson.dumps(np.ascontiguousarray(values, dtype=np.float64), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
    raw = np.frombuffer(body, dtype=np.uint8)
    commas = np.flatnonzero(raw == _COMMA)
    offsets = np.empty(len(values) + 1, dtype=np.int32)
    offsets[0] = 0
    offsets[1:-1] = commas - np.arange(len(commas))  # each value's end, once the commas before it are gone
    offsets[-1] = len(body) - len(commas)
    text = pa.StringArray.from_buffers(len(values), pa.py_buffer(offsets), pa.py_buffer(np.delete(raw, commas)))
    small = (np.abs(values) < 1e-4) & (values != 0)
    if small.any():
        text = pc.replace_with_mask(text, pa.array(small), pa.array([repr(v) for v in values[small].tolist()]))
    return text


def _arrow_texts(values: np.ndarray) -> pa.Array:
    """``repr`` of each float from pyarrow's text: the same shortest round-trip digits in another
    notation (no ``.0`` after a whole number, exponents of its own), so values ``repr`` writes in plain
    notation (zero, and magnitudes from 1e-4 below 1e16) whose pyarrow text has no exponent take it
    (``.0`` added to whole numbers); the rest take ``repr``."""
    text = pc.cast(pa.array(values, type=pa.float64()), pa.string())
    magnitude = np.abs(values)
    plain = (magnitude >= 1e-4) & (magnitude < 1e16) | (values == 0)
    odd = ~plain | np.asarray(pc.match_substring(text, "e"))
    whole = plain & (values == np.floor(values)) & ~odd
    if whole.any():
        mask = pa.array(whole)
        text = pc.replace_with_mask(text, mask, pc.binary_join_element_wise(text.filter(mask), ".0", ""))
    if odd.any():
        text = pc.replace_with_mask(text, pa.array(odd), pa.array([repr(v) for v in values[odd].tolist()]))
    return text


_COMMA = ord(",")
_REPR_SAMPLES = np.array([0.0, -0.0, 1e-4, 0.1, 1.5, 2.0, 100.14285714285714, 1730425200.0, 1730425200.123,
                          123456789.12345679, 999999999999999.9, 1e15, 1e16, 1.2345678901234567e16, 1e22,
                          1.7976931348623157e308, 7e200, 0.00015])
_ORJSON_IS_REPR = orjson.dumps(_REPR_SAMPLES, option=orjson.OPT_SERIALIZE_NUMPY).decode() == \
    "[" + ",".join(map(repr, _REPR_SAMPLES.tolist())) + "]"


def default_key_texts(rows: Rows, source: str) -> pa.Array:
    """The webhook's key for ticks without one, ``f"{source}:{symbol}:{ts!r}:{price!r}:{volume!r}"``, per row."""
    symbols = pc.take(pa.array(rows.symbols, type=pa.string()), pa.array(rows.sym))
    return pc.binary_join_element_wise(source, symbols, float_texts(rows.ts), float_texts(rows.price),
                                       float_texts(rows.volume), ":")


def tick_columns(rows: Rows, source: str) -> TickColumns:
    """The chunk as ``TickColumns``: each row's key (the client's, else the default text) as its digest."""
    if rows.keys is not None and rows.keys.null_count == 0:
        texts = rows.keys
    else:
        texts = default_key_texts(rows, source)
        if rows.keys is not None:
            texts = pc.coalesce(rows.keys, texts)
    raw = b"".join(map(xxhash.xxh3_128_digest, texts.cast(pa.binary()).to_pylist()))
    digest = np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)
    return TickColumns(rows.symbols, rows.sym, rows.price, rows.ts, rows.volume, digest)
