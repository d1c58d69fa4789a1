"""What decides the trained bits besides the spec, pinned where it can be and reported where it cannot.

Measured on this machine (runtime/DETERMINISM.md has the tables): with the
same spec, data and software, XLA:CPU still gives different bits when any of
these differ, so a launcher must fix them *before the trainer imports jax*:

* the intra-op thread-pool size, max(PJRT_NPROC or usable CPUs, local device
  count): it decides how XLA:CPU partitions work. Pinned with `PJRT_NPROC`
  to a value computed from the spec (never from the machine), so a 2-core
  laptop and a 64-core host build the same pool; `taskset` no longer matters.
* `--xla_cpu_max_isa`: SSE4_2, AVX and AVX2 each give other bits than the
  default (the host's best, AVX-512 here). Pinned to AVX2 so XLA's own
  generated code is the same on every AVX2-or-better x86 host. But the
  matmul library kernels XLA calls pick their ISA from cpuid at run time and
  ignore the cap (measured: a 2048² float32 matmul runs at the same ~270
  GFLOP/s and gives the same bits under AVX512/AVX2 caps), so the host's ISA
  features stay a hashed fact: hosts with other vector units are not
  promised the same bits.
* `--xla_cpu_enable_fast_math` (changes bits; pinned off), the number of
  faked devices per process (part of the mesh; pinned), jax's PRNG
  implementation and `jax_threefry_partitionable` (change the random values
  themselves; pinned), x64 mode (pinned off).
* not pinnable here: the CPU's ISA below the AVX2 ceiling, the jax/jaxlib/XLA
  build and the other numeric packages. `host_facts` reads them (once per
  accelerator kind, by `runix lock`) so the lockfile can record them, and the
  pure `numerics_bits(facts, mesh)` adds what is pinned for a mesh: the run
  hash covers the result, and computing it reads nothing.

On accelerators (not measured here: no TPU or GPU is attached to these
machines; DETERMINISM.md says what is promised and why):
* TPU: the compiler is libtpu, so its version is a fact, and its flags
  (`LIBTPU_INIT_ARGS`) are pinned to `TPU_INIT_ARGS` and named in the facts.
* GPU: the CUDA PJRT plugin's version is a fact; XLA_FLAGS pins
  `--xla_gpu_deterministic_ops=true` (XLA's switch to deterministic
  implementations of scatter, reductions with atomics, cuDNN/cuBLAS kernels;
  it implies `--xla_gpu_exclude_nondeterministic_ops`, and compilation fails
  on an op with no deterministic version) and `--xla_gpu_autotune_level=0`
  (autotuning times candidate kernels and keeps the fastest on that day's
  card, so two compiles of one program could pick different kernels).

This module must not import jax: it runs in the launcher and in the compiler
(which never imports jax), and its whole point is to act before jax exists.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from collections.abc import Mapping

# The widest ISA XLA may use on CPU; see the module docstring for why AVX2.
CPU_ISA_CEILING = "AVX2"
# Minimum XLA:CPU intra-op thread-pool size; the pool is max(this, devices per process).
# 4 because the measured cost of an oversubscribed pool on 2 cores is small while
# a pool of 1-2 leaves bigger hosts idle; any fixed value works for determinism.
MIN_CPU_THREADS = 4

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "ml_dtypes", "grain", "tokenizers")
# The compiler/runtime package of each accelerator family (its version is a numerics fact there).
TPU_PACKAGES = ("libtpu",)
GPU_PACKAGES = ("jax-cuda12-plugin", "jax-cuda12-pjrt")
# libtpu's flags, pinned (empty: libtpu's defaults for this version, stated so a user's setting cannot slip in).
TPU_INIT_ARGS = ""
GPU_DETERMINISM_FLAGS = ("--xla_gpu_deterministic_ops=true", "--xla_gpu_autotune_level=0")
ISA_FEATURES = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl",
    "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_tile", "asimd", "sve",
)  # the /proc/cpuinfo flags that decide which kernels XLA:CPU and its libraries may run
# XLA's names for ISA levels, lowest first, with the /proc/cpuinfo flag each needs.
_ISA_LEVELS = (("SSE4_2", "sse4_2"), ("AVX", "avx"), ("AVX2", "avx2"), ("AVX512", "avx512f"))


def _accelerator(mesh) -> str:
    value = getattr(mesh, "accelerator", "cpu")
    return getattr(value, "value", value)


def accelerator_family(mesh) -> str:
    """"cpu", "tpu" or "gpu" for a mesh spec."""
    return _accelerator(mesh).split("-")[0]


def local_device_count(mesh, num_processes: int = 1) -> int:
    """Devices each process owns: the mesh's chips split evenly over the processes."""
    chips = int(getattr(mesh, "chips", 1))
    if num_processes < 1 or chips % num_processes:
        raise ValueError(f"{chips} chips cannot be split evenly over {num_processes} processes")
    return chips // num_processes


def cpu_thread_pool_size(mesh) -> int:
    """The XLA:CPU intra-op pool every process of this run gets: a function of the spec only.

    XLA sizes the pool max(PJRT_NPROC, local devices); with PJRT_NPROC set to
    at least the run's total chip count, the pool is the same for any split
    of those chips over processes (4 devices in one process or 2 × 2).
    """
    return max(MIN_CPU_THREADS, int(getattr(mesh, "chips", 1)))


def gradient_reduction(mesh) -> str:
    """How the train step adds up gradient shards (runtime.train_step): "fixed-order" on cpu, else "xla".

    Measured: on CPU, XLA's all-reduce over gloo sums in an order that depends
    on how the devices are split over processes; the fixed-order reduction
    gives the same bits for 4 devices in 1 process and 2 × 2 in 2 processes.
    On TPU/GPU the topology fixes the layout, and the fixed-order step would
    replicate the optimizer update on every chip.
    """
    return "fixed-order" if _accelerator(mesh) == "cpu" else "xla"


def pinned_xla_flags(mesh, num_processes: int = 1) -> str:
    """XLA_FLAGS for one trainer process of a run on `mesh` (a compiler.spec.MeshSpec).

    On cpu: the faked device count, the ISA ceiling, fast-math off and
    multi-threaded Eigen on (the defaults, stated so a changed default cannot
    slip in). On GPU: XLA's determinism switches (GPU_DETERMINISM_FLAGS). On
    TPU: nothing (libtpu's own flags are LIBTPU_INIT_ARGS, pinned separately).
    """
    if accelerator_family(mesh) == "gpu":
        return " ".join(GPU_DETERMINISM_FLAGS)
    if _accelerator(mesh) != "cpu":
        return ""
    return " ".join([f"--xla_force_host_platform_device_count={local_device_count(mesh, num_processes)}",
                     *_CPU_NUMERIC_FLAGS])


_CPU_NUMERIC_FLAGS = (
    f"--xla_cpu_max_isa={CPU_ISA_CEILING}",
    "--xla_cpu_enable_fast_math=false",
    "--xla_cpu_multi_thread_eigen=true",
)


def pinned_environment(mesh, num_processes: int = 1) -> dict[str, str]:
    """The environment variables a launcher sets for a trainer process (they act when jax is imported).

    Replaces XLA_FLAGS as a whole: any other XLA flag could change the bits too.
    """
    env = {
        "XLA_FLAGS": pinned_xla_flags(mesh, num_processes),
        "JAX_DEFAULT_PRNG_IMPL": "threefry2x32",
        "JAX_THREEFRY_PARTITIONABLE": "1",
        "JAX_ENABLE_X64": "0",
        "JAX_DEFAULT_MATMUL_PRECISION": "default",  # measured: no effect on CPU float32; pinned so a user setting cannot change TPU bits
    }
    if _accelerator(mesh) == "cpu":
        env["PJRT_NPROC"] = str(cpu_thread_pool_size(mesh))
        env["JAX_PLATFORMS"] = "cpu"
    elif accelerator_family(mesh) == "tpu":
        env["LIBTPU_INIT_ARGS"] = TPU_INIT_ARGS
    return env


def environment_drift(mesh, num_processes: int = 1, environ: Mapping[str, str] | None = None) -> dict[str, tuple]:
    """Pinned variables whose current value differs: name -> (current, pinned). Empty when all are pinned."""
    environ = os.environ if environ is None else environ
    return {name: (environ.get(name), value) for name, value in pinned_environment(mesh, num_processes).items()
            if environ.get(name) != value}


def cpu_features(cpuinfo_path: str = "/proc/cpuinfo") -> dict[str, object]:
    """The host CPU's model and the ISA flags XLA:CPU may use, from /proc/cpuinfo (empty off Linux)."""
    model, flags = "", set()
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "isa": sorted(f for f in ISA_FEATURES if f in flags)}


def effective_isa(host_isa: list[str] | tuple[str, ...], ceiling: str = CPU_ISA_CEILING) -> str:
    """The ISA XLA will compile for: the host's best level, capped at the ceiling."""
    best = "none"
    for level, flag in _ISA_LEVELS:
        if flag not in host_isa:
            break
        best = level
        if level == ceiling:
            break
    return best


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages whose code computes the bits (None if absent)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def host_facts(accelerator: str = "cpu", cpuinfo_path: str = "/proc/cpuinfo") -> dict:
    """What of this host decides the bits of runs on `accelerator`, read once per accelerator kind.

    `facts` are hashed (through `numerics_bits`): the machine, python and the
    numeric packages, and on cpu the ISA flags run-time-dispatched library
    kernels may use. `host` is informational (CPU model, platform string).
    Nothing here depends on a mesh, so `runix lock` records it once per
    accelerator kind, and a run on another mesh of a locked kind hashes
    without re-reading the host. Reads /proc/cpuinfo and package metadata only.
    """
    cpu = cpu_features(cpuinfo_path)
    facts: dict[str, object] = {
        "machine": platform.machine(),
        "packages": package_versions(),
        "python": ".".join(map(str, sys.version_info[:3])),
    }
    family = accelerator.split("-")[0]
    if accelerator == "cpu":
        facts["cpu_isa"] = cpu["isa"]  # what run-time-dispatched library kernels (matmuls) may use
    elif family == "tpu":
        facts["accelerator_packages"] = package_versions(TPU_PACKAGES)
    elif family == "gpu":
        facts["accelerator_packages"] = package_versions(GPU_PACKAGES)
    return {"facts": facts, "host": {"cpu_model": cpu["model"], "platform": platform.platform()}}


def numerics_bits(facts: Mapping[str, object], mesh=None) -> dict:
    """The numerics that enter a run's hash: the host `facts` plus what is pinned for `mesh`.

    Pure: a function of its arguments only (no environment, no files), so the
    compiler can hash a run on any mesh from facts recorded in a lockfile.
    The per-process device count is layout, not numerics: the same mesh over
    1 or 2 processes (see DETERMINISM.md for when that keeps the bits).
    """
    bits: dict[str, object] = dict(facts)
    if mesh is None:
        bits.pop("cpu_isa", None)
        return bits
    env = pinned_environment(mesh)
    bits["jax_config"] = {k: v for k, v in env.items() if k.startswith("JAX_")}
    bits["gradient_reduction"] = gradient_reduction(mesh)
    if _accelerator(mesh) == "cpu":
        isa = list(facts.get("cpu_isa", ()))
        bits["xla_cpu_flags"] = list(_CPU_NUMERIC_FLAGS)
        bits["cpu_effective_isa"] = effective_isa(isa)  # what XLA's generated code uses (capped)
        bits["cpu_isa"] = isa
        bits["cpu_thread_pool"] = cpu_thread_pool_size(mesh)
        return bits
    bits.pop("cpu_isa", None)
    if accelerator_family(mesh) == "tpu":
        bits["libtpu_init_args"] = TPU_INIT_ARGS
    elif accelerator_family(mesh) == "gpu":
        bits["xla_gpu_flags"] = list(GPU_DETERMINISM_FLAGS)
    return bits


def numerics_facts(mesh=None, num_processes: int = 1, cpuinfo_path: str = "/proc/cpuinfo") -> dict:
    """Everything besides the spec and data that decides the bits of a run on `mesh`, as plain JSON-able data.

    `bits` = numerics_bits(host_facts(...), mesh): what must match for two
    runs to agree (the run hash covers it); `host` is informational (the CPU
    model name, the platform string, how the devices are split over
    processes). What the trainer records for each session in run.json.
    """
    host = host_facts(_accelerator(mesh) if mesh is not None else "cpu", cpuinfo_path)
    record = dict(host["host"])
    if mesh is not None:
        record["layout"] = {"num_processes": num_processes,
                            "devices_per_process": local_device_count(mesh, num_processes)}
    return {"bits": numerics_bits(host["facts"], mesh), "host": record}
