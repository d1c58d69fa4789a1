"""The digest record of a run: what a replay must reproduce bit for bit.

Why these three things: the loss of every step (as the exact float32 bit
pattern, in hex, because a decimal print can round two different floats to
the same text) pins the whole trajectory and lets a replay name the first
step that differs; a sha256 of all parameters every `digest_every` steps
catches drift the loss does not show; the final parameters' sha256 is what a
child run checks before it starts from this run.

The parameter digest depends on nothing but the values, never on how they
are laid out over devices, and is computed without moving the parameters:
each parameter is reduced *where it lives* (runtime.param_digest, inside a
jitted program) to four 32-bit lane sums of fmix32(bits ^ fmix32(index +
seed)) over its elements, index being the element's C-order position in the
whole array. Integer addition mod 2^32 is exact and order-free, so any
sharding and any reduction tree give the same lanes; one changed element
always changes every lane (fmix32 is a bijection). The record's digest is the
sha256 over the parameters sorted by '/'-joined path, each as a one-line JSON
header {"dtype", "path", "shape"} followed by its four lanes, little-endian.
`params_lanes` is the same reduction in numpy, for host arrays and tests.
`params_sha256` (the sha256 of every parameter's raw bytes) stays for callers
that hold host arrays anyway. Neither is over checkpoint files, whose bytes
depend on the storage library's version, chunking and compression.

Pure Python + numpy (no jax), so the compiler (`runix replay`, `store verify`)
can read and compare records without importing jax.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "runix-digest/1"


def loss_bits(loss: float | np.floating | np.ndarray) -> str:
    """The float32 bit pattern of a loss as 8 hex digits (e.g. 3f800000 for 1.0)."""
    return f"{int(np.asarray(loss, dtype=np.float32).reshape(()).view(np.uint32)):08x}"


def loss_from_bits(bits: str) -> float:
    """Inverse of `loss_bits`."""
    return float(np.array(int(bits, 16), dtype=np.uint32).view(np.float32))


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dict of arrays → {'a/b/c': array}; keys are str()'d (nnx list indices are ints)."""
    flat: dict[str, np.ndarray] = {}
    for key, value in params.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, path + "/"))
        else:
            flat[path] = np.asarray(value)
    return flat


def params_sha256(params: Mapping[str, Any]) -> str:
    """sha256 over the canonical serialization of a (host) parameter tree; see the module docstring."""
    digest = hashlib.sha256()
    for path, array in sorted(flatten_params(params).items()):
        header = {"dtype": array.dtype.name, "path": path, "shape": list(array.shape)}
        digest.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n")
        little_endian = array.astype(array.dtype.newbyteorder("<"), copy=False)
        digest.update(np.ascontiguousarray(little_endian).tobytes())
    return digest.hexdigest()


LANE_SEEDS = (0x9E3779B9, 0x85EBCA6B, 0xC2B2AE35, 0x27D4EB2F)  # one per lane: golden ratio, murmur3 and xxhash primes


def fmix32(h: np.ndarray) -> np.ndarray:
    """murmur3's 32-bit finalizer (a bijection on uint32), elementwise, wrapping."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def element_bits(array: np.ndarray) -> np.ndarray:
    """Each element's raw bits as uint32 (16- and 8-bit types zero-extended)."""
    width = array.dtype.itemsize
    if width not in (1, 2, 4):
        raise ValueError(f"cannot digest {array.dtype} parameters")
    unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32}[width]
    return np.ascontiguousarray(array).view(unsigned).astype(np.uint32)


def array_lanes(array: np.ndarray) -> np.ndarray:
    """The four uint32 lane sums of one array (see the module docstring)."""
    with np.errstate(over="ignore"):
        bits = element_bits(np.asarray(array)).reshape(-1)
        index = np.arange(bits.size, dtype=np.uint32)
        return np.array([np.sum(fmix32(bits ^ fmix32(index + np.uint32(seed))), dtype=np.uint32)
                         for seed in LANE_SEEDS], dtype=np.uint32)


def params_lanes(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """{path: lanes} of a host parameter tree."""
    return {path: array_lanes(array) for path, array in flatten_params(params).items()}


def lanes_sha256(lanes: Mapping[str, np.ndarray], shapes: Mapping[str, tuple], dtypes: Mapping[str, str]) -> str:
    """The record's parameter digest from every parameter's lanes, shape and dtype name."""
    digest = hashlib.sha256()
    for path in sorted(lanes):
        header = {"dtype": dtypes[path], "path": path, "shape": list(shapes[path])}
        digest.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n")
        digest.update(np.asarray(lanes[path], dtype="<u4").tobytes())
    return digest.hexdigest()


def params_digest(params: Mapping[str, Any]) -> str:
    """The record's parameter digest of a host parameter tree (what runtime.param_digest computes on devices)."""
    flat = flatten_params(params)
    return lanes_sha256(params_lanes(params), {p: a.shape for p, a in flat.items()},
                        {p: a.dtype.name for p, a in flat.items()})


@dataclasses.dataclass
class DigestRecord:
    """Per-step loss bits, periodic parameter digests, the final parameter digest.

    losses[s] is the loss of step s (0-based: computed on batch s, before the
    s-th update). params_sha256[k] is the digest after k updates (k > 0).
    """

    run_hash: str
    name: str
    total_steps: int
    losses: list[str] = dataclasses.field(default_factory=list)
    params_sha256: dict[int, str] = dataclasses.field(default_factory=dict)
    final_params_sha256: str | None = None

    @property
    def complete(self) -> bool:
        return self.final_params_sha256 is not None and len(self.losses) == self.total_steps

    def truncated(self, steps: int) -> DigestRecord:
        """The record as it stood after `steps` updates (used when resuming from checkpoint `steps`)."""
        return DigestRecord(self.run_hash, self.name, self.total_steps, list(self.losses[:steps]),
                            {k: v for k, v in self.params_sha256.items() if k <= steps}, None)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "run_hash": self.run_hash,
            "name": self.name,
            "total_steps": self.total_steps,
            "complete": self.complete,
            "losses": list(self.losses),
            "params_sha256": {str(k): v for k, v in sorted(self.params_sha256.items())},
            "final_params_sha256": self.final_params_sha256,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DigestRecord:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} record (format={data.get('format')!r})")
        return cls(
            run_hash=data["run_hash"], name=data["name"], total_steps=int(data["total_steps"]),
            losses=list(data["losses"]),
            params_sha256={int(k): v for k, v in data["params_sha256"].items()},
            final_params_sha256=data.get("final_params_sha256"),
        )


def first_difference(a: DigestRecord, b: DigestRecord) -> str | None:
    """None when two records agree bit for bit; else a sentence naming the first step that differs."""
    for step, (x, y) in enumerate(zip(a.losses, b.losses)):
        if x != y:
            return f"step {step}: loss {loss_from_bits(x)!r} ({x}) != {loss_from_bits(y)!r} ({y})"
    for steps in sorted(set(a.params_sha256) & set(b.params_sha256)):
        if a.params_sha256[steps] != b.params_sha256[steps]:
            return f"after {steps} steps: parameter sha256 {a.params_sha256[steps]} != {b.params_sha256[steps]}"
    if len(a.losses) != len(b.losses):
        return f"one record has {len(a.losses)} steps, the other {len(b.losses)}"
    if a.final_params_sha256 != b.final_params_sha256:
        return f"final parameter sha256 {a.final_params_sha256} != {b.final_params_sha256}"
    return None


def write_json_atomically(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON to a temporary file beside `path`, fsync, then rename over it: readers see old or new, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_digest(path: str | os.PathLike[str], record: DigestRecord) -> None:
    write_json_atomically(path, record.to_json())


def read_digest(path: str | os.PathLike[str]) -> DigestRecord:
    with open(path, encoding="utf-8") as f:
        return DigestRecord.from_json(json.load(f))

