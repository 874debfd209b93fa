"""Candlewick: a realtime market-data engine on trio.

Ticks come in over an authenticated webhook, duplicates are dropped, each symbol's actor
keeps exact 1-minute candles and SMA10, a flusher writes them to a store, and a broadcaster
fans them out to Server-Sent-Events subscribers. docs/ARCHITECTURE.md has the picture.
"""

__version__ = "0.1.0"
