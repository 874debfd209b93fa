"""Tick history pages, as plain functions over a Store: raw ticks by cursor, and candles with SMA10 context.

Every page is one bounded store read: ``ticks_page`` with ``limit``, or ``candles`` with at most
``limit + 10`` (the page, 9 candles of SMA context, and 1 to know whether an older page exists).
"""

from __future__ import annotations

import math
import re

from candlewick.domain import SMA_N, interval_bucket, with_sma
from candlewick.http._json import bar_json, tick_json
from candlewick.http._openapi import CURSOR_PATTERN
from candlewick.http._query import bad_query, float_arg
from candlewick.schema import Bar
from candlewick.storage import Cursor, Store

CURSOR_RE = re.compile(CURSOR_PATTERN)  # epoch seconds, or a raw-history cursor "ts~seq"
RAW_LIMIT = (1, 1000, 200)
CANDLE_LIMIT = (1, 2000, 200)
FILLS = ("none", "prev")
"""``fill``: none (only candles with trades) or prev (gaps as flat candles at the previous close)."""


def raw_cursor(before: str | None) -> Cursor | None:
    """The store cursor for a raw page before ``before``: a "ts~seq" this server issued, or epoch seconds."""
    if not before:
        return None
    if "~" in before:
        ts_raw, _, seq_raw = before.partition("~")
        try:
            return (float(ts_raw), int(seq_raw))
        except ValueError:
            raise bad_query("cursor", "not a cursor this server issued") from None
    return (float_arg("before", before), -1)


async def raw_page(store: Store, symbol: str, cursor: Cursor | None, limit: int) -> tuple[list[dict], str | None]:
    """Up to ``limit`` ticks of ``symbol`` before ``cursor``, newest first, and the cursor of the next page."""
    items, nxt = await store.ticks_page(symbol, cursor, limit)
    return [tick_json(t) for t in items], f"{nxt[0]!r}~{nxt[1]}" if nxt else None


async def candle_page(store: Store, symbol: str, interval: int, before: float, limit: int,
                      fill: str = "none") -> tuple[list[dict], int | None]:
    """The newest ``limit`` candles of ``interval`` seconds before ``before``, as JSON oldest first, each
    with its SMA10 (over the 9 candles before it, read in the same store call), and the ``before`` of
    the next, older page (None when there is none). With ``fill="prev"`` the intervals between two
    candles that had no trade are candles too: flat at the previous close, volume 0, ``filled``."""
    if fill == "prev":
        return await _filled_page(store, symbol, interval, before, limit)
    desc = await store.candles(symbol, interval, before, limit + SMA_N)
    page, context = desc[:limit], desc[limit:limit + SMA_N - 1]
    oldest_first = context[::-1] + page[::-1]
    items = [bar_json(symbol, bar, sma) for bar, sma in with_sma(oldest_first, len(context))]
    return items, page[-1].bucket if len(desc) > limit else None


async def _filled_page(store: Store, symbol: str, interval: int, before: float,
                       limit: int) -> tuple[list[dict], int | None]:
    """``candle_page`` with gaps filled. The series runs from the symbol's first candle to its last,
    one candle per interval; a page is its newest ``limit`` candles before ``before`` (a filled one
    counts as one), so cursors walk it as they walk real candles, and SMA10 counts filled candles."""
    newest = await store.candles(symbol, interval, math.inf, 1)
    if not newest:
        return [], None
    # the page's newest slot: the last candle, or, when `before` falls inside the series, the last
    # interval that starts before it
    top = newest[0].bucket if newest[0].bucket < before else _slot_before(before, interval)
    first = top - (limit + SMA_N - 2) * interval  # the oldest slot of page and context
    # real candles from `first` to `top`, and the one before `first` (its close fills the leading
    # gap): at most limit + 9 + 1
    real = await store.candles(symbol, interval, top + 1, limit + SMA_N)
    series = _fill(real[::-1], first, top, interval)
    page_start = max(0, len(series) - limit)
    items = [bar_json(symbol, bar, sma) for bar, sma in with_sma(series, max(0, len(series) - limit))]
    for item, bar in zip(items, series[page_start:], strict=True):
        item["filled"] = bar.count == 0
    return items, series[page_start].bucket if page_start > 0 else None  # older slots exist


def _slot_before(before: float, interval: int) -> int:
    """The start of the last interval that starts before ``before``."""
    slot = interval_bucket(before, interval)
    return slot - interval if slot >= before else slot


def _fill(real: list[Bar], first: int, top: int, interval: int) -> list[Bar]:
    """One candle per interval from ``first`` (or the oldest real candle, if later) to ``top``,
    oldest first: the real ones, and flat ones at the previous close between them."""
    out: list[Bar] = []
    prev: Bar | None = None
    i = 0
    while i < len(real) and real[i].bucket < first:  # before the window: only its close matters
        prev = real[i]
        i += 1
    slot = first if prev is not None else (real[i].bucket if i < len(real) else top + interval)
    while slot <= top:
        if i < len(real) and real[i].bucket == slot:
            prev = real[i]
            out.append(prev)
            i += 1
        else:
            out.append(_flat(slot, prev))  # type: ignore[arg-type]  # prev is set: slot > a real candle
        slot += interval
    return out


def _flat(bucket: int, prev: Bar) -> Bar:
    """An interval without trades: open = high = low = close = the previous close, no volume."""
    bar = Bar(bucket, prev.close, float(bucket), 0.0)
    bar.count = 0
    bar.pv = bar.psum = 0.0
    return bar
