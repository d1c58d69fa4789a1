"""Seeded permutations with random access: where item j goes, in O(1), for any j.

The data order must be a pure function of (seed, step, slot) so a resumed or
replayed run computes batch N directly, without generating the N batches
before it, and without a table whose size grows with the data. A keyed
Feistel network over the next even power of two, with cycle walking back
into [0, size), is a bijection on [0, size) evaluated per index, vectorized
over numpy arrays.

Keys come from sha256 of the seed and a label path (e.g. ("window", "code",
epoch)), so the order is fixed by this file alone: it does not depend on
numpy's random generators (whose streams may change between releases), the
platform, or the process.
"""

from __future__ import annotations

import hashlib

import numpy as np

from dataprep.digests import canonical_json

ROUNDS = 6
_MASK64 = (1 << 64) - 1
_C1, _C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_M1, _M2 = np.uint64(_C1), np.uint64(_C2)
# Below this many indices, plain Python integers beat numpy's per-call overhead
# (a step's slots and a source's share of them are usually a handful).
_SCALAR_PATH_MAX = 48


def derive_key(seed: int, *labels: str | int) -> int:
    """A 64-bit key for one use of randomness: sha256 of (seed, *labels)."""
    data = canonical_json(["runix.data.v1", int(seed), *labels])
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little")


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a fast, well-mixing bijection on uint64."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _mix64_int(x: int) -> int:
    """`_mix64` on one Python int (bit-identical: wrapping 64-bit arithmetic)."""
    x ^= x >> 30
    x = (x * _C1) & _MASK64
    x ^= x >> 27
    x = (x * _C2) & _MASK64
    return x ^ (x >> 31)


class Permutation:
    """A keyed bijection of [0, size); `perm(indices)` maps an array of indices."""

    def __init__(self, size: int, key: int):
        if size < 1:
            raise ValueError(f"permutation size must be >= 1, got {size}")
        self.size = int(size)
        bits = max(2, (self.size - 1).bit_length())
        bits += bits % 2
        self._half = np.uint64(bits // 2)
        self._mask = np.uint64((1 << (bits // 2)) - 1)
        self._round_keys_int = tuple(
            _mix64_int(_mix64_int((key + r) & _MASK64)) for r in range(1, ROUNDS + 1)
        )
        self._round_keys = np.array(self._round_keys_int, dtype=np.uint64)

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self._half, x & self._mask
        for round_key in self._round_keys:
            left, right = right, left ^ (_mix64(right ^ round_key) & self._mask)
        return (left << self._half) | right

    def _one(self, x: int) -> int:
        """Walk one index through the network until it lands in [0, size)."""
        half, mask = int(self._half), int(self._mask)
        while True:
            left, right = x >> half, x & mask
            for round_key in self._round_keys_int:
                left, right = right, left ^ (_mix64_int(right ^ round_key) & mask)
            x = (left << half) | right
            if x < self.size:
                return x

    def __call__(self, indices: np.ndarray | int) -> np.ndarray:
        flat = np.asarray(indices, dtype=np.int64)
        if flat.size and (flat.min() < 0 or flat.max() >= self.size):
            raise IndexError(f"index outside [0, {self.size})")
        if self.size == 1:
            return np.zeros_like(flat)
        if flat.size <= _SCALAR_PATH_MAX:
            return np.array([self._one(x) for x in flat.ravel().tolist()], dtype=np.int64).reshape(flat.shape)
        out = self._encrypt(flat.astype(np.uint64))
        # Cycle walking: re-encrypt values that fell outside [0, size). The domain is
        # at most 4x the size, so this takes a few rounds on average.
        size = np.uint64(self.size)
        pending = out >= size
        while pending.any():
            out[pending] = self._encrypt(out[pending])
            pending = out >= size
        return out.astype(np.int64)
