"""Accelerator profiles, as data, with the source of every number.

Why data and not code: the dry run's price is FLOPs ÷ (chips × peak × MFU); a
user checking a number must find where it came from, and adding a profile
must not need a new branch anywhere else.

`peak_flops` is the dense (no sparsity) bf16 peak per chip and `memory_bytes`
the HBM per chip, both as the vendor publishes them (GB = 10⁹ bytes, GiB =
2³⁰). `hbm_bytes_per_s` is the memory bandwidth per chip the vendor publishes (what
compiler.step_time prices memory-bound work at). `default_mfu` is an
assumption, not a measurement: the one model-FLOPs utilization (as MaxText and
PaLM Appendix B define it; compiler.flops counts FLOPs the same way) the dry
run priced every run at before the size-aware step-time model
(compiler.step_time). It is kept as that model's baseline
(benchmarks/bench_cost_model.py) and in `runix compile --json`; `--mfu X`
prices every run at one MFU of the user's.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType


@dataclasses.dataclass(frozen=True)
class HardwareProfile:
    name: str
    peak_flops: float  # dense bf16 FLOP/s per chip
    memory_bytes: int  # HBM (or RAM) per chip; per host when memory_shared
    chips_per_host: int
    default_mfu: float  # the flat MFU assumption the step-time model replaced (its benchmark's baseline)
    source: str  # where peak, memory and MFU come from
    attention: str  # best attention implementation on this accelerator (kernels/attention.py)
    memory_shared: bool = False  # True: memory_bytes is one host's, shared by its chips (faked CPU devices)
    hbm_bytes_per_s: float = 0.0  # memory bandwidth per chip (what memory-bound work runs at; compiler.step_time)

    def memory_per_chip(self, chips: int) -> int:
        """Bytes one chip of a `chips`-chip mesh may use."""
        if self.memory_shared:
            return self.memory_bytes // max(1, min(chips, self.chips_per_host))
        return self.memory_bytes


GiB = 1024**3
GB = 10**9

PROFILES = MappingProxyType({
    "tpu-v4": HardwareProfile(
        "tpu-v4", 275e12, 32 * GiB, 4, 0.50,
        "https://cloud.google.com/tpu/docs/v4: 275 TFLOP/s bf16 and 32 GiB HBM2 per chip at 1,200 GB/s, 4 chips per host; "
        "MFU 0.50 assumed (PaLM reports 46.2% for 540B on v4, Chowdhery et al. 2022 Table 3; nothing for small models).",
        "pallas_tpu", hbm_bytes_per_s=1200e9),
    "tpu-v5e": HardwareProfile(
        "tpu-v5e", 197e12, 16 * GB, 8, 0.45,
        "https://cloud.google.com/tpu/docs/v5e: 197 TFLOP/s bf16 and 16 GB HBM2 per chip at 819 GB/s, 8 chips per host "
        "(multi-host slices use 4-chip hosts), 256-chip pod; MaxText reports 56-67% MFU for 16B-128B on v5e-256, "
        "nothing for sub-1B, so 0.45 is assumed for the 470M/2.8B models.",
        "pallas_tpu", hbm_bytes_per_s=819e9),
    "tpu-v5p": HardwareProfile(
        "tpu-v5p", 459e12, 95 * GB, 4, 0.50,
        "https://cloud.google.com/tpu/docs/v5p: 459 TFLOP/s bf16 and 95 GB HBM2e per chip at 2,765 GB/s, 4 chips per host; "
        "MFU 0.50 assumed.",
        "pallas_tpu", hbm_bytes_per_s=2765e9),
    "tpu-v6e": HardwareProfile(
        "tpu-v6e", 918e12, 32 * GB, 8, 0.45,
        "https://cloud.google.com/tpu/docs/v6e: Trillium, 918 TFLOP/s bf16 and 32 GB HBM per chip at 1,640 GB/s, 8 chips per "
        "host; MFU 0.45 assumed.",
        "pallas_tpu", hbm_bytes_per_s=1640e9),
    "gpu-h100": HardwareProfile(
        "gpu-h100", 989e12, 80 * GB, 8, 0.40,
        "NVIDIA H100 datasheet (https://www.nvidia.com/en-us/data-center/h100/), SXM: 989 TFLOP/s dense bf16 "
        "(1979 is with sparsity), 80 GB HBM3 at 3.35 TB/s; 8 GPUs per HGX node; MFU 0.40 assumed.",
        "cudnn", hbm_bytes_per_s=3.35e12),
    "gpu-h200": HardwareProfile(
        "gpu-h200", 989e12, 141 * GB, 8, 0.40,
        "NVIDIA H200 datasheet (https://www.nvidia.com/en-us/data-center/h200/), SXM: 989 TFLOP/s dense bf16 "
        "(same Hopper die as H100), 141 GB HBM3e at 4.8 TB/s; 8 GPUs per HGX node; MFU 0.40 assumed.",
        "cudnn", hbm_bytes_per_s=4.8e12),
    "cpu": HardwareProfile(
        "cpu", 50e9, 24 * GiB, 1 << 16, 0.30,
        "This project's 2-core development machine: ~50 GFLOP/s float32 matmul, 24 GiB RAM shared by every faked "
        "device of the one host, ~20 GB/s memory bandwidth assumed; MFU 0.30 assumed. Measure yours with benchmarks/bench_runtime.py.",
        "xla", memory_shared=True, hbm_bytes_per_s=20e9),
})


def profile(accelerator: str) -> HardwareProfile:
    """The profile of an accelerator name (a spec's mesh.accelerator, or its enum default)."""
    return PROFILES[getattr(accelerator, "value", accelerator)]


def is_tpu(accelerator: str) -> bool:
    """Whether an accelerator name (or its enum) is a TPU: libtpu compiles its steps, here too (runtime.aot)."""
    return str(getattr(accelerator, "value", accelerator)).startswith("tpu")


def default_attention(accelerator: str) -> str:
    """The attention implementation `kernels.attention: auto` resolves to."""
    return profile(accelerator).attention
