"""The books of all of a dispatcher's symbols as columns (``BookTable``): one ``apply`` updates many symbols at once.

Each symbol is a row: its newest trade time, floor, key count and cached SMA sum are arrays indexed
by row; its changeable bars (and the 9 before them) live in ``RowBars``; its remembered keys in the
shared ``KeyIndex``. ``apply`` takes a batch as columns (row, price, ts, volume, digest) in arrival
order and gives each tick a status and each new tick its bar and SMA10, with the same results, bit
for bit, as one ``SymbolBook`` (the per-tick reference, tests/_reference_book.py) per symbol applying
its ticks in that order (tests/unit/test_table.py holds them together). No Python loop runs per
tick, nor per symbol but for the rare symbols over their key cap.

All or nothing: ``apply`` checks its input and computes every result (statuses, bars, SMAs) before
it changes anything; then it reserves room for new bars, adds the new keys to the index (a rebuild
of the index is made aside and taken over whole), and only writes arrays. So when it raises the
table is as it was, and a dispatcher whose pass raised can re-run the pass symbol by symbol to find
the one whose work fails: ``apply_isolated`` does, and gives the same ``Outcome`` with that
symbol's ticks CRASHED and its exception in ``crashed``.

Using it: ``row = table.add(symbol)`` (an empty book) and ``table.seed(row, seed)`` when the actor
has loaded its ``BookSeed`` (again after a restart: the row starts afresh); then per pass
``apply_isolated(table, rows, price, ts, volume, digest)`` over the pass's columns (``TickColumns``
with ``sym`` mapped to rows). The ``Outcome`` gives each tick's status, the new ticks' positions
(what the store writes) and their events' columns.

Keys reused: a key is remembered with the minute of the trade time it was first applied with. A
later tick with the same key is a duplicate, whatever its trade time, while that minute is at or
above the symbol's floor minute (and the later tick is not itself below the floor: then it is
skipped). Once the floor has passed that minute the key is forgotten, and a tick reusing it is new.
This is what ``SymbolBook`` does.
"""

from __future__ import annotations

import numpy as np

from candlewick.domain._candles import BUCKET, SMA_N
from candlewick.domain._dedupe import KeyIndex, first_seen
from candlewick.domain._kernel import BarColumns, fold, group_starts, minute_of
from candlewick.domain._outcome import CRASHED, DUPLICATE, SKIPPED, Outcome, seed_columns
from candlewick.domain._rowbars import RowBars
from candlewick.domain._sma import Batch, smas, sum9
from candlewick.schema import Bar

_MAX_TS = float(BUCKET << 31)
"""Trade times are below this (their minute fits the 31 bits a (row, minute) key gives it)."""
_NO_FLOOR = np.iinfo(np.int32).min
"""The floor minute of a row without a floor (every key live). Floor minutes are int32, as the key
index keeps minutes: a floor below this (a huge lateness) is this, all the same as trade times are
from 0 on."""


def floor_minutes(floor: np.ndarray) -> np.ndarray:
    """The minute of each floor (``bucket_of(floor) // 60``); ``_NO_FLOOR`` for -inf."""
    out = np.full(len(floor), _NO_FLOOR, dtype=np.int32)
    finite = np.isfinite(floor)
    out[finite] = np.maximum(minute_of(floor[finite]), _NO_FLOOR)
    return out


class BookTable:
    """Dedupe horizons, changeable 1m bars and SMA10 of many symbols, one row each."""

    def __init__(self, *, lateness: float = 3600.0, max_keys: int = 100_000) -> None:
        self.lateness = lateness
        self.max_keys = max_keys
        self.symbols: list[str] = []
        self._rows: dict[str, int] = {}
        self._max_ts = np.zeros(0)
        self._cap_floor = np.zeros(0)
        self._floor = np.zeros(0)
        self._fm = np.zeros(1, dtype=np.int32)
        """Each row's floor minute (one spare at the end: the index reads ``floors[-1]``)."""
        self._nkeys = np.zeros(0, dtype=np.int64)
        self._prev9 = np.zeros(0)
        self._keyed = np.zeros(0, dtype=bool)
        """Rows that have had keys in the index (a rebuilt row's keys must be purged)."""
        self._live = 0
        self._bars = RowBars()
        self._index = KeyIndex()

    # -- rows ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.symbols)

    def row(self, symbol: str) -> int | None:
        """The row of ``symbol``, or None."""
        return self._rows.get(symbol)

    def add(self, symbol: str, seed=None) -> int:
        """A new row for ``symbol`` (an empty book, or ``seed``'s: see ``seed``); returns it."""
        if symbol in self._rows:
            raise ValueError(f"{symbol} has a row already")
        row = len(self.symbols)
        if row == len(self._max_ts):
            self._grow(max(16, 2 * row))
        self.symbols.append(symbol)
        self._rows[symbol] = row
        if seed is not None:
            try:
                self.seed(row, seed)
            except BaseException:  # a seed refused (or a fault): no row was added
                del self._rows[symbol]
                self.symbols.pop()
                raise
        return row

    def _grow(self, size: int) -> None:
        more = size - len(self._max_ts)
        self._max_ts = np.append(self._max_ts, np.full(more, -np.inf))
        self._cap_floor = np.append(self._cap_floor, np.full(more, -np.inf))
        self._floor = np.append(self._floor, np.full(more, -np.inf))
        self._fm = np.concatenate((self._fm[:-1], np.full(more + 1, _NO_FLOOR, dtype=np.int32)))
        self._nkeys = np.append(self._nkeys, np.zeros(more, dtype=np.int64))
        self._prev9 = np.append(self._prev9, np.full(more, np.nan))
        self._keyed = np.append(self._keyed, np.zeros(more, dtype=bool))
        self._bars.add_rows(more)

    def seed(self, row: int, seed) -> None:
        """(Re)build ``row`` from the store: ``seed`` has ``bars`` (``schema.Bar``), ``keys`` ((key,
        ts) pairs, a key being its 16-byte digest or a text, digested here) and ``max_ts`` (None:
        no trade yet), as ``storage.BookSeed``; the same state as ``SymbolBook(symbol, bars=...,
        keys=..., max_ts=...)``. Two keys alike keep the older minute. Raises ValueError, changing
        nothing, if a key at or above the floor has no bar in its minute."""
        if seed.max_ts is None and not seed.bars and not seed.keys:  # no trade yet: an empty book, at once
            if self._keyed[row]:
                self._index.purge([row])
            self._live -= int(self._nkeys[row])
            self._nkeys[row] = 0
            self._bars.clear(row)
            self._max_ts[row] = self._cap_floor[row] = self._floor[row] = -np.inf
            self._fm[row] = _NO_FLOOR
            self._prev9[row] = np.nan
            return
        max_ts = -np.inf if seed.max_ts is None else float(seed.max_ts)
        floor = max_ts - self.lateness
        fm = int(floor_minutes(np.array([floor]))[0])
        minutes, values, digests, key_minutes, per_bar = seed_columns(seed.bars, seed.keys, fm)
        rows = np.array([row])
        self._bars.reserve(rows, np.array([len(minutes)]))
        if self._keyed[row]:
            self._index.purge([row])
        self._live -= int(self._nkeys[row])
        self._bars.clear(row)
        if len(minutes):
            self._bars.write(rows, np.array([len(minutes)]), minutes, values, per_bar)
        self._max_ts[row], self._cap_floor[row], self._floor[row], self._fm[row] = max_ts, -np.inf, floor, fm
        count = len(digests)
        self._nkeys[row] = count
        self._live += count
        if count:
            self._keyed[row] = True
            self._index.add(np.full(count, row), digests, key_minutes, self._fm, self._live)
        self._bars.first[row] = int(np.searchsorted(minutes, fm)) if len(minutes) else 0
        self._settle(rows, every=True)
        self._prev9[row] = self._prev9_of(row)

    def _prev9_of(self, row: int) -> float:
        b = self._bars
        n, base = int(b.n[row]), int(b.base[row])
        if n < SMA_N:
            return np.nan
        return float(sum9(b.bars.close[base + n - SMA_N:base + n - 1][None, :])[0])

    # -- state queries ------------------------------------------------------------------------
    def bars(self, row: int) -> list[Bar]:
        """The row's bars, oldest first (copies)."""
        b = self._bars
        return [b.bars.bar(s, int(b.minute[s]) * BUCKET) for s in range(int(b.base[row]), int(b.base[row] + b.n[row]))]

    def max_ts(self, row: int) -> float:
        return float(self._max_ts[row])

    def floor(self, row: int) -> float:
        """Ticks of this row with trade time below this are skipped."""
        return float(self._floor[row])

    def keys(self, row: int) -> int:
        """Keys the row remembers."""
        return int(self._nkeys[row])

    @property
    def live_keys(self) -> int:
        return self._live

    @property
    def nbytes(self) -> int:
        rows = sum(a.nbytes for a in (self._max_ts, self._cap_floor, self._floor, self._fm, self._nkeys, self._prev9,
                                      self._keyed))
        return rows + self._bars.nbytes + self._index.nbytes

    # -- the one mutation ---------------------------------------------------------------------
    def apply(self, rows: np.ndarray, price: np.ndarray, ts: np.ndarray, volume: np.ndarray,
              digest: np.ndarray) -> Outcome:
        """Apply a batch (columns, arrival order; each row's ticks in the order that row's book
        applies them). Raises ValueError on malformed columns; raises, changing nothing, on any
        fault."""
        rows, price, ts, volume, digest = self._checked(rows, price, ts, volume, digest)
        n = len(rows)
        out = Outcome(n)
        if not n:
            return out
        skip = ts < self._floor[rows]
        cand = np.flatnonzero(~skip)
        fresh = first_seen(rows, digest, cand)
        fresh[fresh] = ~self._index.find(rows[cand[fresh]], digest[cand[fresh]], self._fm[rows[cand[fresh]]])
        new = cand[fresh]
        out.status[skip] = SKIPPED
        out.status[cand[~fresh]] = DUPLICATE
        out.new = new
        if not len(new):
            return out
        # bars: group the new ticks by (row, minute), each group in arrival order
        r, m = rows[new], minute_of(ts[new])
        order = np.argsort((r.astype(np.int64) << 32) | m, kind="stable")
        pos = new[order]
        gr, gm = r[order], m[order]
        starts = group_starts((gr.astype(np.int64) << 32) | gm)
        g_row, g_min = gr[starts], gm[starts]
        rank, exists = self._bars.locate(g_row, g_min)
        slot = np.where(exists, self._bars.base[g_row] + rank, 0)
        init = self._bars.bars.take(slot)
        folded = fold(starts, price[pos], ts[pos], volume[pos], init, exists)
        group = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(pos))))
        batch = Batch(pos, starts, group, g_row, g_min, rank, exists, folded.close, n)
        sma, busy, prev9 = smas(self._bars, self._prev9, batch)
        out.bucket = m * BUCKET
        after = np.empty((5, len(new)))
        after[:, order] = folded.after.T
        out.open, out.high, out.low, out.close, out.volume = after
        out.sma = np.empty(len(new))
        out.sma[order] = sma
        self._commit(new, rows, digest, m, batch, folded.final, busy, prev9)
        return out

    def _checked(self, rows, price, ts, volume, digest):
        rows = np.asarray(rows)
        if rows.dtype.kind not in "iu":
            raise ValueError("rows must be integers")
        rows = rows.astype(np.intp)
        price, ts, volume = (np.asarray(a, dtype=np.float64) for a in (price, ts, volume))
        digest = np.asarray(digest, dtype=np.uint64)
        n = len(rows)
        if not (len(price) == len(ts) == len(volume) == n and digest.shape == (n, 2)):
            raise ValueError("columns of different lengths")
        if n and (rows.min() < 0 or rows.max() >= len(self.symbols)):
            raise ValueError("a row out of range")
        if not (np.isfinite(price).all() and np.isfinite(ts).all() and np.isfinite(volume).all()):
            raise ValueError("price, ts and volume must be finite")
        if n and not (ts.min() >= 0 and ts.max() < _MAX_TS):
            raise ValueError("trade times must be epoch seconds from 0 on")
        return rows, price, ts, volume, digest

    def _commit(self, new, rows, digest, minutes, batch: Batch, final: BarColumns, busy, prev9) -> None:
        """Write a computed batch into the table: room first (the only step that allocates), then
        the index, then plain writes."""
        bars = self._bars
        exists, g_row = batch.exists, batch.row
        lengths = np.diff(np.append(batch.starts, len(batch.pos)))
        fresh = np.flatnonzero(~exists)
        heads = group_starts(g_row[fresh])
        new_rows = g_row[fresh][heads]
        new_counts = np.diff(np.append(heads, len(fresh)))
        bars.reserve(new_rows, new_counts)
        self._index.add(rows[new], digest[new], minutes, self._fm, self._live + len(new))
        touched_heads = group_starts(g_row)
        touched = g_row[touched_heads]
        self._keyed[touched] = True
        old = np.flatnonzero(exists)
        slot = bars.base[g_row[old]] + batch.rank[old]
        bars.bars.put(slot, final.take(old))
        bars.keys[slot] += lengths[old]
        if len(fresh):
            bars.write(new_rows, new_counts, batch.minute[fresh], final.take(fresh), lengths[fresh])
        last = np.append(touched_heads[1:], len(g_row)) - 1
        self._max_ts[touched] = np.maximum(self._max_ts[touched], final.close_ts[last])
        self._nkeys[touched] += np.add.reduceat(lengths, touched_heads)
        self._live += len(new)
        self._prev9[busy] = prev9
        self._settle(touched)

    def _settle(self, rows: np.ndarray, every: bool = False) -> None:
        """After ``rows`` took ticks (or a seed: ``every``): their floors, the keys and bars the
        floors passed, the key cap; as ``SymbolBook._evict``. After ticks, only rows whose floor
        minute rose or that are over the cap have anything to forget."""
        was = self._fm[rows]
        self._set_floor(rows)
        if not every:
            rows = rows[(self._fm[rows] > was) | (self._nkeys[rows] > self.max_keys)]
        if not len(rows):
            return
        self._forget(rows)
        over = rows[self._nkeys[rows] > self.max_keys]
        for row in over.tolist():  # rare: a symbol past its key cap
            self._cap(row)
        cut = self._bars.first[rows] - (SMA_N - 1)
        ahead = cut > 0
        self._bars.cut(rows[ahead], cut[ahead])

    def _set_floor(self, rows: np.ndarray) -> None:
        floor = np.maximum(self._max_ts[rows] - self.lateness, self._cap_floor[rows])
        self._floor[rows] = floor
        self._fm[rows] = floor_minutes(floor)

    def _forget(self, rows: np.ndarray) -> None:
        """Move each row's first changeable bar up to its floor minute, forgetting the keys of the
        minutes it passes (one bar a step, over all rows at once)."""
        b = self._bars
        fm = self._fm
        while len(rows):
            first = b.first[rows]
            slot = np.minimum(b.base[rows] + first, len(b.minute) - 1)
            passed = (first < b.n[rows]) & (b.minute[slot] < fm[rows])
            rows, slot = rows[passed], slot[passed]
            gone = b.keys[slot]
            self._nkeys[rows] -= gone
            self._live -= int(gone.sum())
            b.keys[slot] = 0
            b.first[rows] += 1

    def _cap(self, row: int) -> None:
        """Forget the row's oldest minutes of keys while it remembers more than ``max_keys`` and
        more than one minute of them; the floor rises past each (``KeyHorizon._forget_keys``)."""
        b = self._bars
        base, first, n = int(b.base[row]), int(b.first[row]), int(b.n[row])
        keyed = base + first + np.flatnonzero(b.keys[base + first:base + n])
        for slot in keyed[:-1].tolist():
            if self._nkeys[row] <= self.max_keys:
                break
            gone = int(b.keys[slot])
            self._nkeys[row] -= gone
            self._live -= gone
            b.keys[slot] = 0
            self._cap_floor[row] = max(self._cap_floor[row], float((int(b.minute[slot]) + 1) * BUCKET))
        rows = np.array([row])
        self._set_floor(rows)
        self._forget(rows)


def apply_isolated(table: BookTable, rows: np.ndarray, price: np.ndarray, ts: np.ndarray, volume: np.ndarray,
                   digest: np.ndarray) -> Outcome:
    """``table.apply``; should it raise, the batch again row by row (each row's ticks in order),
    so that only the rows whose own work raises fail: their ticks get CRASHED and their exceptions
    are in ``crashed``; every other row's work is applied as ``apply`` would have."""
    try:
        return table.apply(rows, price, ts, volume, digest)
    except Exception:  # noqa: BLE001 - whose fault it was is found below
        pass
    rows = np.asarray(rows)
    price, ts, volume, digest = (np.asarray(a) for a in (price, ts, volume, digest))
    out = Outcome(len(rows))
    parts: list[tuple[np.ndarray, Outcome]] = []
    for row in np.unique(rows).tolist():
        at = np.flatnonzero(rows == row)
        try:
            part = table.apply(rows[at], price[at], ts[at], volume[at], digest[at])
        except Exception as exc:  # noqa: BLE001 - this row's crash; the others' work stands
            out.crashed[row] = exc
            out.status[at] = CRASHED
            continue
        out.status[at] = part.status
        parts.append((at[part.new], part))
    return out.joined(parts)
