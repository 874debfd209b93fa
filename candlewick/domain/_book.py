"""What applying one symbol's ticks gave, per tick (``Applied``): the per-tick reference book's result.

The reference book itself (``SymbolBook``, the plain-Python book ``BookTable`` is held to bit for
bit) lives in the tests: tests/_reference_book.py. See docs/ARCHITECTURE.md, "The book table".
"""

from __future__ import annotations

from typing import NamedTuple

from candlewick.domain._events import Event
from candlewick.schema import Tick


class Applied(NamedTuple):
    """The outcome of one ``SymbolBook.apply`` call."""

    new: list[Tick]
    """Ticks applied for the first time, in applied order (what the store must write)."""
    events: list[Event]
    """One ``Event`` per new tick, in applied order."""
    duplicates: int
    skipped: int
    duplicate_at: list[int] | None = None
    """Positions in the input of the duplicates, ascending (None if there were none): lets a
    caller that joined several requests' ticks into one batch give each request its own counts."""
    skipped_at: list[int] | None = None
    """Positions in the input of the skipped ticks, ascending (None if there were none)."""
