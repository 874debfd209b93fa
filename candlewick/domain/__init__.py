"""The domain, sans-IO: the candle rule, SMA10, rollups, the book table, events, request accounting.

Nothing here does I/O or knows trio: plain functions and classes, tested directly.
"""

from candlewick.domain._candles import (BUCKET, INTERVALS, SMA_N, WEEK, WEEK_ORIGIN, bucket_of, group_by_symbol,
                                        interval_bucket, interval_buckets, interval_origin, rollup, seqsum, with_sma)
from candlewick.domain._dedupe import KeyIndex, first_seen
from candlewick.domain._events import (Committed, Event, EventColumns, committed_at, event_json, event_row,
                                       event_rows, num, row_json)
from candlewick.domain._kernel import BarColumns, Folded, fold, minute_of, sma10
from candlewick.domain._outcome import CRASHED, DUPLICATE, NEW, SKIPPED, Outcome
from candlewick.domain._table import BookTable, apply_isolated
from candlewick.domain._ticket import Ticket

__all__ = ["BUCKET", "INTERVALS", "SMA_N", "Committed", "Event", "EventColumns", "Ticket", "bucket_of",
           "committed_at", "event_json", "event_row", "event_rows", "group_by_symbol",
           "num", "rollup", "seqsum", "row_json", "with_sma", "WEEK", "WEEK_ORIGIN", "interval_bucket",
           "interval_buckets", "interval_origin",
           "BarColumns", "Folded", "KeyIndex", "first_seen", "fold", "minute_of", "sma10",
           "BookTable", "Outcome", "NEW", "DUPLICATE", "SKIPPED", "CRASHED", "apply_isolated"]
