"""The Redis bus: idempotency claims, the SSE event channel, shard streams and leases."""

from candlewick.bus._redis import RedisBus, shard_of
from candlewick.bus._scripts import decode_entry

__all__ = ["RedisBus", "decode_entry", "shard_of"]
