"""Idempotency keys as 128-bit digests: what the dedupe index and the stores remember of a key.

A digest is XXH3-128 of the key's UTF-8 bytes, as two unsigned 64-bit halves ``(hi, lo)``; its
16 bytes (``digest_bytes``) are ``hi`` then ``lo``, big-endian, so that byte order and numeric
order agree (what Postgres compares in ``bytea``). A key without a client's value is digested from
its default text (``source:symbol:ts:price:volume``), so digests do not depend on where they were
computed. With 10^12 keys remembered, the chance that any two distinct keys share a digest is about
n^2 / 2^129 = 1.5e-15.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import xxhash

DIGEST_BYTES = 16

_digest = xxhash.xxh3_128_digest
_encode = str.encode

digest_key = xxhash.xxh3_128_digest
"""``digest_key(key.encode())``: one key's digest as its 16 bytes."""


def key_digests(keys: Iterable[str]) -> np.ndarray:
    """The digests of ``keys``, in order: an ``(n, 2)`` array of uint64, columns ``hi``, ``lo``."""
    raw = b"".join(map(_digest, map(_encode, keys)))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)


def key_digest(key: str) -> tuple[int, int]:
    """One key's digest as ``(hi, lo)``."""
    raw = _digest(key.encode())
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")


def digest_bytes(digests: np.ndarray) -> bytes:
    """The digests' 16-byte forms, concatenated (``hi`` then ``lo``, big-endian)."""
    return np.ascontiguousarray(digests, dtype=np.uint64).astype(">u8").tobytes()


def digests_from_bytes(raw: bytes) -> np.ndarray:
    """The inverse of ``digest_bytes``."""
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)
