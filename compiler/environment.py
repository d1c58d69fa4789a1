"""The software and numerics facts a lock pins: what the runtime trains with.

Why in the lock: the same spec trained under another jax or on a CPU with
other vector instructions gives other bits (BRIEF §6), so these facts are
inputs of every run's hash, exactly like data digests. They are read once by
`runix lock` (and `runix lock --check`), never while hashing: hashing stays
hermetic and only reads what the lockfile recorded.

Package versions come from installed distribution metadata
(importlib.metadata), never by importing the packages: the compiler must
not pay for, or depend on, importing jax.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
from collections.abc import Mapping
from typing import Any

RUNTIME_PACKAGES = ("jax", "jaxlib", "flax", "optax", "grain", "orbax-checkpoint", "numpy")
"""Distributions whose versions enter the hash (python is added by runtime_versions)."""

CPU_ISA_FLAGS = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl",
    "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_tile", "asimd", "sve",
)
"""/proc/cpuinfo flags that decide which kernels XLA:CPU may emit (x86 and arm)."""

CPU_FACT_PREFIX = "cpu"
"""Top-level numerics keys starting with this describe the host CPU; see numerics_for()."""


def runtime_versions() -> dict[str, str | None]:
    """{"python": "3.11.7", "jax": "0.10.2", ...}; None for a package not installed."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in RUNTIME_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def numerics_facts() -> dict[str, Any]:
    """The runtime's own numerics facts when it provides them, else our fallback.

    `runtime.numerics.numerics_facts()` (pure Python, no jax import) knows the
    XLA flags the trainer pins; until it exists, `fallback_numerics_facts`
    records what can be read without the runtime.
    """
    try:
        module = importlib.import_module("runtime.numerics")
    except ModuleNotFoundError as err:
        if err.name not in ("runtime", "runtime.numerics"):
            raise
        return fallback_numerics_facts()
    facts = getattr(module, "numerics_facts", None)
    if facts is None:
        return fallback_numerics_facts()
    return _plain(facts())


def fallback_numerics_facts() -> dict[str, Any]:
    """CPU architecture, ISA flags and usable CPU count (XLA:CPU's thread pool size)."""
    return {
        "cpu": {
            "machine": platform.machine(),
            "isa": sorted(cpu_isa_flags()),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        },
        "source": "compiler.environment.fallback_numerics_facts",
    }


def cpu_isa_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU_ISA_FLAGS present in /proc/cpuinfo (empty where it is unreadable)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return set()
    present: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            present.update(value.split())
    return present & set(CPU_ISA_FLAGS)


def numerics_for(facts: Mapping[str, Any], accelerator: str) -> dict[str, Any]:
    """The numerics facts that can change a run's bits on `accelerator`.

    Host CPU facts only matter when the model runs on the CPU; a TPU or GPU run
    locked on two different laptops must keep one hash.
    """
    if accelerator == "cpu":
        return dict(facts)
    return {key: value for key, value in facts.items() if not key.startswith(CPU_FACT_PREFIX)}


def _plain(value: Any) -> Any:
    """JSON-plain copy (tuples → lists, keys → str) so a lockfile round-trips exactly."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(item) for item in value)
    return value
