"""Messages between the actors: a dispatcher pass for the flusher, barriers, and the symbols' epochs.

The hot-path one, ``FlushItem``, is a plain slotted class, not ``attrs``: see docs/ARCHITECTURE.md,
"Actors and their interface" (messages).
"""

from __future__ import annotations

import attrs
import numpy as np
import trio

from candlewick.domain import EventColumns
from candlewick.errors import CandlewickError
from candlewick.schema import TickColumns


class FlushItem:
    """Dispatcher -> flusher: what one pass of a lane's dispatcher applied, for many symbols, as columns.

    The flusher screens it (``screen``), writes its new ticks, then ``commit``s (tickets resolved,
    events published) or ``drop``s it (tickets failed, actors rebuild). Each part of the pass is one
    request's ticks in this lane; each of its rows (``shares``) is one symbol part of its ticket.
    """

    __slots__ = ("lane", "cols", "outcome", "part_of", "tickets", "shares", "version", "n", "_rows", "_epochs")

    def __init__(self, lane, cols: list[np.ndarray], outcome, part_of: np.ndarray, tickets: list,
                 shares: list[np.ndarray], version: int) -> None:
        self.lane = lane
        """The dispatcher: its ``symbols`` name the rows."""
        self.cols = cols
        """The new ticks, in applied order: rows, price, ts, volume, digest."""
        self.outcome = outcome
        """The pass's ``Outcome``: its event columns (``new`` positions) are the new ticks'."""
        self.part_of = part_of
        """The part each new tick came in."""
        self.tickets = tickets
        """Each part's ticket (None for ticks nobody waits on)."""
        self.shares = shares
        """Each part's rows still to be committed: its symbol parts."""
        self.version = version
        """``Epochs.version`` when applied: unchanged at the flusher means no epoch moved since."""
        self.n = len(cols[0])
        """How many new ticks the item holds."""
        rows = np.unique(np.concatenate(shares)) if shares else np.zeros(0, dtype=np.int32)
        self._rows = rows
        self._epochs = lane.rows.epoch[rows].copy()

    @property
    def live(self) -> bool:
        """Some symbol part is left to write and commit."""
        return len(self._rows) > 0

    # -- what the flusher writes and publishes --------------------------------------------------------
    @staticmethod
    def columns(items: list[FlushItem]) -> TickColumns:
        """The new ticks of items of one lane, in applied order, as the store takes them: symbols
        coded by their position in the list of those present."""
        cols = items[0].cols if len(items) == 1 else [np.concatenate(c) for c in zip(*(i.cols for i in items),
                                                                                      strict=True)]
        rows, price, ts, volume, digest = cols
        present, codes = np.unique(rows, return_inverse=True)
        symbols = items[0].lane.symbols
        return TickColumns([symbols[r] for r in present.tolist()], codes.astype(np.int32), price, ts, volume, digest)

    @staticmethod
    def event_columns(items: list[FlushItem], writes: TickColumns) -> EventColumns:
        """The events of items of one lane (their new ticks, ``writes``: ``columns(items)``), as
        columns: the ticks' and the pass outcomes' own, with no object per event."""
        bars = [(o.sma, o.bucket, o.open, o.high, o.low, o.close, o.volume) for o in (item.outcome for item in items)]
        values = bars[0] if len(bars) == 1 else [np.concatenate(column) for column in zip(*bars, strict=True)]
        return EventColumns(writes.symbols, writes.sym, writes.price, writes.ts, writes.volume, *values)

    # -- outcomes -----------------------------------------------------------------------------------
    def screen(self, epochs: Epochs, error: CandlewickError) -> int:
        """Drop, unwritten, the symbols whose epoch moved since they were applied and the symbols
        holding a part of an expired request; return how many new ticks went with them."""
        expired = [i for i, t in enumerate(self.tickets) if t is not None and t.expired]
        if epochs.version == self.version and not expired:
            return 0
        get, symbols = epochs.get, self.lane.symbols
        doomed = {r for r, e in zip(self._rows.tolist(), self._epochs.tolist(), strict=True) if e != get(symbols[r], 0)}
        for i in expired:
            doomed.update(self.shares[i].tolist())
        return self._drop_rows(doomed, epochs, error)

    def claim(self) -> None:
        """The write of this item begins: its requests now wait for its outcome."""
        for ticket in self.tickets:
            if ticket is not None:
                ticket.committing = True

    def commit(self) -> None:
        for ticket, rows in zip(self.tickets, self.shares, strict=True):
            if ticket is not None and len(rows):
                ticket.resolve(len(rows))

    def drop(self, epochs: Epochs, error: CandlewickError) -> int:
        """Forget the whole item unwritten: its requests fail, its actors rebuild."""
        return self._drop_rows(set(self._rows.tolist()), epochs, error)

    def _drop_rows(self, doomed: set[int], epochs: Epochs, error: CandlewickError) -> int:
        if not doomed:
            return 0
        symbols = self.lane.symbols
        for row in doomed:
            epochs.bump(symbols[row])
        gone = np.fromiter(doomed, dtype=np.int32)
        for i, (ticket, rows) in enumerate(zip(self.tickets, self.shares, strict=True)):
            hit = np.isin(rows, gone)
            if hit.any():
                if ticket is not None:
                    ticket.fail(error, int(hit.sum()))
                self.shares[i] = rows[~hit]
        keep = ~np.isin(self._rows, gone)
        self._rows, self._epochs = self._rows[keep], self._epochs[keep]
        keep = ~np.isin(self.cols[0], gone)
        dropped = int(len(keep) - keep.sum())
        if dropped:
            self.cols = [c[keep] for c in self.cols]
            self.part_of = self.part_of[keep]
            self.outcome = self.outcome.keep(keep)
            self.n -= dropped
        return dropped


class Epochs(dict):
    """symbol -> epoch. The flusher bumps a symbol's epoch when it drops work the actor had
    applied (store outage, expired request); the actor then rebuilds its book from the store."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 0
        """Bumps so far, all symbols: lets a flusher skip per-symbol checks while nothing moved."""

    def bump(self, symbol: str) -> None:
        self[symbol] = self.get(symbol, 0) + 1
        self.version += 1


@attrs.frozen
class Barrier:
    """Symbol actor -> flusher (through its dispatcher, in order with the items): set
    ``reached`` once everything sent before is committed or dropped."""

    reached: trio.Event
