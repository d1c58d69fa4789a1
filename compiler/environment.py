"""The software and numerics facts a lock pins: what the runtime trains with.

Why in the lock: the same spec trained under another jax or on a CPU with
other vector instructions gives other bits (BRIEF §6), so these facts are
inputs of every run's hash, exactly like data digests. They are read once by
`runix lock` (and `runix lock --check`), never while hashing: hashing stays
hermetic and only reads what the lockfile recorded.

Package versions come from installed distribution metadata
(importlib.metadata, through runtime.numerics, which imports no jax), never
by importing the packages: the compiler must not pay for, or depend on,
importing jax.
"""

from __future__ import annotations

import importlib
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

def runtime_versions() -> dict[str, str | None]:
    """{"python": "3.11.7", "jax": "0.10.2", ...}; None for a package not installed.

    The versions are read the way the runtime reads them,
    runtime.numerics.package_versions (pure Python, distribution metadata only).
    """
    from runtime.numerics import package_versions

    return {"python": platform.python_version(), **package_versions(RUNTIME_PACKAGES)}


def numerics_facts(mesh: Any = None) -> dict[str, Any]:
    """{"bits": what must match for two runs to agree (hashed), "host": informational} for a run's mesh.

    `runtime.numerics.numerics_facts(mesh)` (pure Python, no jax import)
    knows the XLA flags and thread pool the trainer pins for that mesh; when
    the runtime is not importable, `fallback_numerics_facts` records what can
    be read without it.
    """
    try:
        module = importlib.import_module("runtime.numerics")
    except ModuleNotFoundError as err:
        if err.name not in ("runtime", "runtime.numerics"):
            raise
        return fallback_numerics_facts(mesh)
    facts = getattr(module, "numerics_facts", None)
    if facts is None:
        return fallback_numerics_facts(mesh)
    return _plain(facts(mesh))


def fallback_numerics_facts(mesh: Any = None) -> dict[str, Any]:
    """Architecture and python always; on cpu runs the ISA flags and usable CPUs (XLA:CPU's pool) too."""
    isa = sorted(cpu_isa_flags())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    bits: dict[str, Any] = {"machine": platform.machine(), "python": platform.python_version()}
    if accelerator_name(mesh) == "cpu":
        bits["cpu_isa"] = isa
        bits["usable_cpus"] = usable
    return {"bits": bits, "host": {"cpu_isa": isa, "usable_cpus": usable,
                                   "source": "compiler.environment.fallback_numerics_facts"}}


def hashed_numerics(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The part of numerics facts that enters the run hash: `bits` (a fact without it is hashed whole)."""
    bits = facts.get("bits")
    return dict(bits) if isinstance(bits, Mapping) else dict(facts)


def accelerator_name(mesh: Any) -> str:
    """"cpu", "tpu-v5e", …: a default mesh holds the enum member, a parsed one its value; no mesh is cpu."""
    value = getattr(mesh, "accelerator", "cpu") if mesh is not None else "cpu"
    return str(getattr(value, "value", value))


def mesh_key(mesh: Any) -> str:
    """A readable key naming a mesh in the lockfile's numerics table: "cpu chips=4 data=2 fsdp=1 tensor=2"."""
    axes = getattr(mesh, "axes", None)
    parts = [accelerator_name(mesh), f"chips={getattr(mesh, 'chips', 1)}"]
    if axes is not None:
        parts += [f"data={axes.data}", f"fsdp={axes.fsdp}", f"tensor={axes.tensor}"]
    topology = getattr(mesh, "topology", None)
    if topology:
        parts.append(f"topology={topology}")
    return " ".join(parts)


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


def _plain(value: Any) -> Any:
    """JSON-plain copy (tuples → lists, keys → str) so a lockfile round-trips exactly."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(item) for item in value)
    return value
