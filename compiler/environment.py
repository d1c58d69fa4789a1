"""The software and numerics facts a lock pins: what the runtime trains with.

Why in the lock: the same spec trained under another jax or on a CPU with
other vector instructions gives other bits (BRIEF §6), so these facts are
inputs of every run's hash, exactly like data digests. They are read once by
`runix lock` (and `runix lock --check`), never while hashing: hashing stays
hermetic and only reads what the lockfile recorded. Host facts are recorded
once per accelerator kind ("cpu", "tpu-v5e"), not per mesh: what a mesh adds
(pinned flags, thread pool) is a pure function of the mesh and those facts.

Package versions come from installed distribution metadata
(importlib.metadata, through runtime.numerics, which imports no jax), never
by importing the packages: the compiler must not pay for, or depend on,
importing jax.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from typing import Any

RUNTIME_PACKAGES = ("jax", "jaxlib", "flax", "optax", "grain", "orbax-checkpoint", "numpy")
"""Distributions whose versions enter the hash (python is added by runtime_versions)."""

def runtime_versions() -> dict[str, str | None]:
    """{"python": "3.11.7", "jax": "0.10.2", ...}; None for a package not installed.

    The versions are read the way the runtime reads them,
    runtime.numerics.package_versions (pure Python, distribution metadata only).
    """
    from runtime.numerics import package_versions

    return {"python": platform.python_version(), **package_versions(RUNTIME_PACKAGES)}


def numerics_facts(accelerator: str = "cpu") -> dict[str, Any]:
    """{"facts": hashed host facts, "host": informational} of this machine for runs on `accelerator`.

    `runix lock` records one such entry per accelerator kind (the lockfile's
    environment.numerics); runtime.numerics.host_facts (pure Python, no jax
    import) reads them. What a run hashes is `numerics_bits(entry, mesh)`.
    """
    from runtime.numerics import host_facts

    return _plain(host_facts(accelerator))


def numerics_bits(entry: Mapping[str, Any], mesh: Any) -> dict[str, Any]:
    """What of a lock's numerics entry enters the hash of a run on `mesh` (pure: reads nothing).

    runtime.numerics.numerics_bits adds what the trainer pins for the mesh
    (XLA flags, thread pool, gradient reduction) to the recorded host facts,
    so chips and axes may change on a locked accelerator kind without a relock.
    """
    from runtime.numerics import numerics_bits as bits_for_mesh

    return _plain(bits_for_mesh(entry.get("facts", {}), mesh))


def accelerator_name(mesh: Any) -> str:
    """"cpu", "tpu-v5e", …: a default mesh holds the enum member, a parsed one its value; no mesh is cpu."""
    value = getattr(mesh, "accelerator", "cpu") if mesh is not None else "cpu"
    return str(getattr(value, "value", value))


def _plain(value: Any) -> Any:
    """JSON-plain copy (tuples → lists, keys → str) so a lockfile round-trips exactly."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(item) for item in value)
    return value
