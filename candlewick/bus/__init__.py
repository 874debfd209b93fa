"""The Redis bus: idempotency claims, the SSE event channel, shard streams and leases."""

from candlewick.bus._redis import RedisBus, decode_entry, shard_of

__all__ = ["RedisBus", "decode_entry", "shard_of"]
