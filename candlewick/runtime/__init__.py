"""The runtime: supervisor, admission, router, symbol actors and their dispatchers, flusher,
fan-out to SSE subscribers, the Redis relay and shard workers, the feeder, metrics."""

from candlewick.runtime._actor import Dispatcher, SymbolActor
from candlewick.runtime._admission import Admission
from candlewick.runtime._broadcaster import Broadcaster, Subscriber
from candlewick.runtime._feeder import RandomWalk, run_builtin, run_http
from candlewick.runtime._flusher import Flusher
from candlewick.runtime._messages import Barrier, Epochs, FlushItem, Ticket, Work
from candlewick.runtime._metrics import Metrics
from candlewick.runtime._process import machine_busy_seconds, pid_cpu_seconds, pid_rss_bytes, tune_gc, tune_malloc
from candlewick.runtime._relay import Listener, Publisher
from candlewick.runtime._router import Router
from candlewick.runtime._shards import ShardWorker
from candlewick.runtime._supervisor import ChildState, RestartPolicy, supervise

__all__ = ["Admission", "Barrier", "Broadcaster", "ChildState", "Dispatcher", "Epochs", "FlushItem", "Flusher",
           "Listener", "Metrics", "Publisher", "RandomWalk", "RestartPolicy", "Router", "ShardWorker", "Subscriber", "SymbolActor", "Ticket", "Work",
           "run_builtin", "run_http", "supervise", "tune_gc", "tune_malloc",
           "machine_busy_seconds", "pid_cpu_seconds", "pid_rss_bytes"]
