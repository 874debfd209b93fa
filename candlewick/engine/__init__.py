"""Runtime: configuration, the supervision tree and lifecycle, the sans-IO book, the stores."""

from candlewick.engine._admission import Admission
from candlewick.engine._book import INTERVALS, SymbolBook, rollup, with_sma
from candlewick.engine._config import Config
from candlewick.engine._store import BookSeed, Cursor, MemoryStore, RawTick, Store, group_by_symbol
from candlewick.engine._supervisor import ChildState, RestartPolicy, supervise

__all__ = ["INTERVALS", "Admission", "BookSeed", "ChildState", "Config", "Cursor", "Engine", "MemoryStore",
           "RawTick", "RestartPolicy", "Store", "SymbolBook", "group_by_symbol", "rollup", "supervise", "tune_gc",
           "tune_malloc", "with_sma"]


def __getattr__(name: str):
    # The engine wires the actors, and the actors use the engine's parts: importing Engine lazily
    # lets ``candlewick.actors`` (or ``candlewick.http``) be imported first.
    if name in ("Engine", "tune_gc", "tune_malloc"):
        from candlewick.engine import _engine

        return getattr(_engine, name)
    raise AttributeError(f"module 'candlewick.engine' has no attribute {name!r}")
