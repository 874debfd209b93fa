"""Storage: the Store protocol and the embedded memory store.

The durable Postgres store is ``candlewick.storage.postgres``, imported only where a database is
configured (it brings asyncpg and trio-asyncio, which change asyncio for the whole process).
"""

from candlewick.storage._memory import MemoryStore, MemoryStoreStatistics
from candlewick.storage._protocol import BookSeed, Cursor, RawTick, Store

__all__ = ["BookSeed", "Cursor", "MemoryStore", "MemoryStoreStatistics", "RawTick", "Store"]
