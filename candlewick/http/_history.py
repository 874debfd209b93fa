"""Tick history pages, as plain functions over a Store: raw ticks by cursor, and candles with SMA10 context."""

from __future__ import annotations

import math
import re

from candlewick.domain import rollup, with_sma
from candlewick.http._json import bar_json, tick_json
from candlewick.http._openapi import CURSOR_PATTERN
from candlewick.http._query import bad_query, float_arg
from candlewick.storage import Cursor, Store

CURSOR_RE = re.compile(CURSOR_PATTERN)  # epoch seconds, or a raw-history cursor "ts~seq"
RAW_LIMIT = (1, 1000, 200)
CANDLE_LIMIT = (1, 2000, 200)


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


async def candle_page(store: Store, symbol: str, interval: int, before: float,
                      limit: int) -> tuple[list[dict], int | None]:
    """The newest ``limit`` candles of ``interval`` seconds before ``before``, as JSON oldest first, each
    with its SMA10 (up to 9 older candles are read for context), and the ``before`` of the next, older
    page (None when there is none)."""
    if interval == 60:
        desc = await store.bars_before(symbol, before, limit + 9 + 1)
        page, context = desc[:limit], desc[limit:limit + 9]
        more = len(desc) > limit
    else:
        edge = math.ceil(before / interval) * interval
        want = limit + 10  # the page, 9 for SMA context, 1 to know whether more exist
        desc = []
        cursor = edge
        groups: set[int] = set()
        while len(groups) <= want:
            chunk = await store.bars_before(symbol, cursor, 2000)
            if not chunk:
                break
            desc.extend(chunk)
            groups.update(b.bucket - b.bucket % interval for b in chunk)
            cursor = chunk[-1].bucket
        rolled = rollup(reversed(desc), interval)
        if len(groups) > want:
            rolled = rolled[1:]  # the oldest group may be cut short
        rolled.reverse()
        page, context = rolled[:limit], rolled[limit:limit + 9]
        more = len(rolled) > limit
    oldest_first = list(reversed(context)) + list(reversed(page))
    items = [bar_json(symbol, bar, sma) for bar, sma in with_sma(oldest_first, len(context))]
    return items, page[-1].bucket if more and page else None
