"""BookTable's rules beyond the reference: keys reused, seeds, all-or-nothing apply, crashes traced to their row."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from candlewick.domain import CRASHED, DUPLICATE, NEW, SKIPPED, BookTable, apply_isolated
from candlewick.schema import Bar, Tick, digests_from_bytes, key_digests
from tests._reference_book import SymbolBook
from tests.unit.test_table import T0, Pair, bar_bits, key


def columns(ticks):
    """(row, key, price, ts, volume) tuples as apply's columns."""
    return (np.array([t[0] for t in ticks]), np.array([t[2] for t in ticks], dtype=float),
            np.array([t[3] for t in ticks], dtype=float), np.array([t[4] for t in ticks], dtype=float),
            digests_from_bytes(b"".join(key(t[1]) for t in ticks)))


def state(table: BookTable) -> list:
    return [([bar_bits(b) for b in table.bars(r)], table.keys(r), table.floor(r), table.max_ts(r))
            for r in range(len(table))] + [table.live_keys]


def test_a_key_reused_with_another_trade_time():
    """A key is remembered with the minute of its first trade time: reused at any trade time it is a
    duplicate while that minute is at or above the floor minute, and new once the floor passed it
    (the reused tick must itself be at or above the floor, else it is skipped). As SymbolBook."""
    table = BookTable(lateness=300.0)
    book = SymbolBook("S", lateness=300.0)
    table.add("S")
    steps = [
        [(0, 1, 10.0, T0 + 10, 1.0)],        # key 1 first seen in minute 0
        [(0, 1, 11.0, T0 + 200, 1.0)],       # same key, later trade time: duplicate
        [(0, 2, 12.0, T0 + 330, 1.0)],       # floor T0 + 30: minute 0 still live
        [(0, 1, 13.0, T0 + 40, 1.0)],        # same key, its old trade time, above the floor: duplicate
        [(0, 3, 14.0, T0 + 400, 1.0)],       # floor T0 + 100: minute 0 forgotten
        [(0, 1, 15.0, T0 + 30, 1.0)],        # same key below the floor: skipped
        [(0, 1, 16.0, T0 + 380, 1.0)],       # same key above the floor: new (a new first use)
        [(0, 1, 17.0, T0 + 390, 1.0)],       # and now a duplicate again
    ]
    expected = [NEW, DUPLICATE, NEW, DUPLICATE, NEW, SKIPPED, NEW, DUPLICATE]
    for ticks, want in zip(steps, expected, strict=True):
        out = table.apply(*columns(ticks))
        applied = book.apply([Tick(key(k), "S", p, t, v) for _, k, p, t, v in ticks])
        ref = DUPLICATE if applied.duplicates else SKIPPED if applied.skipped else NEW
        assert out.status.tolist() == [want] == [ref]


def test_a_key_is_a_duplicate_only_for_its_own_symbol():
    table = BookTable()
    table.add("A")
    table.add("B")
    out = table.apply(*columns([(0, 7, 1.0, T0, 1.0), (1, 7, 1.0, T0, 1.0), (1, 7, 1.0, T0 + 1, 1.0)]))
    assert out.status.tolist() == [NEW, NEW, DUPLICATE]


def test_seed_keys_as_text_are_digested_like_the_decoder():
    """A store's key kept as text (from before digests) dedupes the tick whose digest is of that text."""
    table = BookTable()
    bar = Bar(int(T0), 5.0, T0 + 1, 1.0)
    table.add("S", SimpleNamespace(bars=[bar], keys=[("client-key-1", T0 + 1)], max_ts=T0 + 1))
    digest = key_digests(["client-key-1", "client-key-2"])
    out = table.apply(np.array([0, 0]), np.array([6.0, 7.0]), np.array([T0 + 2, T0 + 3]), np.array([1.0, 1.0]), digest)
    assert out.status.tolist() == [DUPLICATE, NEW]


def test_seed_with_a_key_twice_keeps_it_once():
    """Two (key, ts) pairs alike in a seed: one key remembered, as SymbolBook's set has it."""
    bars = [Bar(int(T0), 5.0, T0 + 1, 1.0), Bar(int(T0) + 60, 5.0, T0 + 61, 1.0)]
    seed = SimpleNamespace(bars=bars, keys=[(key(1), T0 + 1), (key(1), T0 + 61), (key(2), T0 + 61)], max_ts=T0 + 61)
    pair = Pair(1, 3600.0, 100_000, {0: seed})
    assert pair.table.keys(0) == 2
    pair.apply([(0, 1, 6.0, T0 + 62, 1.0), (0, 3, 6.0, T0 + 63, 1.0)])


def test_seed_key_without_its_bar_is_refused_and_changes_nothing():
    table = BookTable()
    table.add("S")
    table.apply(*columns([(0, 1, 10.0, T0 + 5, 1.0)]))
    before = state(table)
    seed = SimpleNamespace(bars=[Bar(int(T0), 5.0, T0, 1.0)], keys=[(key(9), T0 + 70)], max_ts=T0 + 70)
    with pytest.raises(ValueError):
        table.seed(0, seed)
    assert state(table) == before


def test_a_refused_seed_adds_no_row():
    table = BookTable()
    seed = SimpleNamespace(bars=[], keys=[(key(1), T0)], max_ts=T0)
    with pytest.raises(ValueError):
        table.add("S", seed)
    assert len(table) == 0 and table.row("S") is None
    assert table.add("S") == 0


def test_a_reseeded_row_forgets_what_it_had():
    """Seeding a row again (a restart) starts it afresh: keys it had before are not duplicates."""
    table = BookTable()
    table.add("S")
    table.apply(*columns([(0, 1, 10.0, T0 + 5, 1.0)]))
    table.seed(0, SimpleNamespace(bars=[], keys=[], max_ts=None))
    assert table.bars(0) == [] and table.keys(0) == 0 and table.live_keys == 0
    assert table.apply(*columns([(0, 1, 10.0, T0 + 5, 1.0)])).status.tolist() == [NEW]


def test_a_faulty_batch_changes_nothing():
    """apply checks and computes before it changes anything: a tick it refuses leaves the table as it was."""
    pair = Pair(3, 600.0, 100_000, {})
    pair.apply([(r, k, 10.0 + k, T0 + 7 * k, 1.0) for k in range(20) for r in range(3)])
    before = state(pair.table)
    rows, price, ts, volume, digest = columns([(0, 100, 1.0, T0 + 200, 1.0), (1, 101, 1.0, T0 + 201, 1.0)])
    price[1] = np.nan
    with pytest.raises(ValueError):
        pair.table.apply(rows, price, ts, volume, digest)
    assert state(pair.table) == before
    with pytest.raises(ValueError):
        pair.table.apply(np.array([0, 5]), price, ts, volume, digest)  # no row 5
    price[1] = 1.0
    ts[0] = -1.0
    with pytest.raises(ValueError):
        pair.table.apply(rows, price, ts, volume, digest)  # before the epoch
    assert state(pair.table) == before


def test_apply_isolated_fails_only_the_row_whose_work_raises():
    """A pass that raises is run again row by row: the faulty row's ticks are CRASHED with its
    exception kept; the other rows are applied exactly as a pass without that row."""
    ticks = [(r, k, 10.0 + k, T0 + 3 * k, 1.0) for k in range(10) for r in range(4)]
    rows, price, ts, volume, digest = columns(ticks)
    price[5] = np.inf  # a tick of row 1
    table, clean = BookTable(lateness=600.0), BookTable(lateness=600.0)
    for s in "ABCD":
        table.add(s)
        clean.add(s)
    out = apply_isolated(table, rows, price, ts, volume, digest)
    assert list(out.crashed) == [1] and isinstance(out.crashed[1], ValueError)
    assert (out.status[rows == 1] == CRASHED).all()
    keep = rows != 1
    ref = clean.apply(rows[keep], price[keep], ts[keep], volume[keep], digest[keep])
    assert out.status[keep].tolist() == ref.status.tolist()
    assert out.new.tolist() == np.flatnonzero(keep)[ref.new].tolist()
    for name in ("bucket", "open", "high", "low", "close", "volume", "sma"):
        assert np.array_equal(getattr(out, name), getattr(ref, name), equal_nan=True)
    assert state(table) == state(clean)
    assert apply_isolated(table, rows[keep], price[keep], ts[keep], volume[keep], digest[keep]).crashed == {}


def test_a_long_run_with_bars_moved_and_packed():
    """Many minutes over 50 symbols with a short horizon and a small key cap: bars forgotten, rows'
    bars moved to new segments and the columns packed (forced every few batches), keys capped; the
    table stays the reference's."""
    rng = np.random.default_rng(5)
    pair = Pair(50, 120.0, 30, {})
    for step in range(60):
        n = 300
        ts = T0 + step * 20.0 + rng.random(n) * 40.0 - np.where(rng.random(n) < 0.1, rng.random(n) * 200.0, 0.0)
        ticks = [(int(s), int(k), float(p), float(t), float(v)) for s, k, p, t, v in
                 zip(rng.integers(0, 50, n), rng.integers(0, 5000, n), rng.random(n) * 100 + 1, np.round(ts, 1),
                     rng.random(n), strict=True)]
        pair.apply(ticks)
        if step % 7 == 3:
            pair.table._bars.pack()
            pair.check_state()
