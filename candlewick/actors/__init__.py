"""The actors: router, symbol actor, flusher, broadcaster, feeder (see ARCHITECTURE.md)."""

from candlewick.actors._broadcaster import Broadcaster, Subscriber, event_json, num
from candlewick.actors._feeder import RandomWalk, run_builtin, run_http
from candlewick.actors._flusher import Flusher
from candlewick.actors._messages import Barrier, Epochs, FlushItem, Ticket, Work
from candlewick.actors._router import Router
from candlewick.actors._symbol import SymbolActor

__all__ = ["Barrier", "Broadcaster", "Epochs", "FlushItem", "Flusher", "RandomWalk", "Router", "Subscriber", "SymbolActor",
           "Ticket", "Work", "event_json", "num", "run_builtin", "run_http"]
