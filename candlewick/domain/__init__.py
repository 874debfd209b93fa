"""The domain, sans-IO: the candle rule, SMA10, rollups, one symbol's book, events, request accounting.

Nothing here does I/O or knows trio: plain functions and classes, tested directly.
"""

from candlewick.domain._book import Applied, SymbolBook
from candlewick.domain._candles import BUCKET, INTERVALS, SMA_N, bucket_of, group_by_symbol, rollup, with_sma

__all__ = ["BUCKET", "INTERVALS", "SMA_N", "Applied", "SymbolBook", "bucket_of", "group_by_symbol", "rollup",
           "with_sma"]
