"""The runtime: the tasks of the supervision tree and the channels between them.

Supervisor and admission; the router, the symbol actors and their dispatchers; the flusher; the
fan-out to SSE subscribers; the Redis relay and shard workers; the feeder; metrics and process tuning.
"""

from candlewick.runtime._actor import ActorStatistics, SymbolActor
from candlewick.runtime._admission import Admission, AdmissionStatistics
from candlewick.runtime._dispatcher import Dispatcher
from candlewick.runtime._broadcaster import Broadcaster, BroadcasterStatistics
from candlewick.runtime._egress import Egress
from candlewick.runtime._feeder import FeedTotals, RandomWalk, Retry, run_builtin, run_http
from candlewick.runtime._flusher import Flusher, FlusherStatistics
from candlewick.runtime._messages import Barrier, Epochs, FlushItem
from candlewick.runtime._metrics import Metrics
from candlewick.runtime._process import machine_busy_seconds, pid_cpu_seconds, pid_rss_bytes, tune_gc, tune_malloc
from candlewick.runtime._relay import Listener, Publisher
from candlewick.runtime._router import Router
from candlewick.runtime._shards import ShardWorker, ShardWorkerStatistics
from candlewick.runtime._subscriber import Subscriber
from candlewick.runtime._supervisor import ChildState, RestartPolicy, supervise

__all__ = ["ActorStatistics", "Admission", "AdmissionStatistics", "Barrier", "Broadcaster",
           "BroadcasterStatistics", "ChildState", "Dispatcher", "Egress", "Epochs", "FeedTotals", "FlushItem", "Flusher",
           "FlusherStatistics", "Listener", "Metrics", "Publisher", "RandomWalk", "RestartPolicy", "Retry", "Router",
           "ShardWorker", "ShardWorkerStatistics", "Subscriber", "SymbolActor", "machine_busy_seconds",
           "pid_cpu_seconds", "pid_rss_bytes", "run_builtin", "run_http", "supervise", "tune_gc", "tune_malloc"]
