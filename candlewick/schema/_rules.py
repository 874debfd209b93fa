"""The limits of the tick webhook (docs/API.md) in one place, and the symbol grammar checked in bulk.

Both decoders of ``_decode`` (the typed one to columns and the item-by-item one that names every
problem) read their limits from here, so they cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Collection

SYMBOL_RE = re.compile(r"[A-Za-z0-9.\-_:/]{1,32}")
"""A symbol, whole (``fullmatch``): 1 to 32 characters of ``A-Z a-z 0-9 . - _ : /``."""
MAX_SYMBOL_LEN = 32
MAX_ITEMS = 10_000
MAX_KEY_LEN = 200
MAX_FUTURE_S = 300.0
"""A trade time may be at most this far ahead of the server's clock."""
MILLISECONDS_ABOVE = 1e11
"""A refused trade time above this gets the message "looks like milliseconds"."""
MAX_DETAILS = 50

_SYMBOL_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_:/"


def symbols_valid(symbols: Collection[str]) -> bool:
    """Whether every one of ``symbols`` matches ``SYMBOL_RE``."""
    return all(1 <= len(s) <= MAX_SYMBOL_LEN for s in symbols) and symbol_chars_valid(symbols)


def symbol_chars_valid(symbols: Collection[str]) -> bool:
    """Whether every one of ``symbols`` is made of the grammar's characters only (lengths are for
    the caller), at C speed: the symbols are joined by a byte outside the grammar, the grammar's
    bytes deleted, and only the separators may remain."""
    if not symbols:
        return True
    joined = "\n".join(symbols)
    return joined.isascii() and len(joined.encode().translate(None, _SYMBOL_CHARS)) == len(symbols) - 1
