"""Accelerator profiles, as data, with the source of every number.

Why data and not code: the dry run's price is FLOPs ÷ (chips × peak × MFU); a
user checking a number must find where it came from, and adding a profile
must not need a new branch anywhere else.

`peak_flops` is the dense (no sparsity) bf16 peak per chip and `memory_bytes`
the HBM per chip, both as the vendor publishes them (GB = 10⁹ bytes, GiB =
2³⁰). `default_mfu` is an assumption, not a measurement: model-FLOPs
utilization as MaxText and PaLM Appendix B define it (compiler.flops counts
FLOPs the same way); `runix compile --mfu` overrides it for every run.
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
    default_mfu: float  # model-FLOPs utilization assumed by the dry run
    source: str  # where peak, memory and MFU come from
    attention: str  # best attention implementation on this accelerator (kernels/attention.py)
    memory_shared: bool = False  # True: memory_bytes is one host's, shared by its chips (faked CPU devices)

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
        "https://cloud.google.com/tpu/docs/v4: 275 TFLOP/s bf16 and 32 GiB HBM2 per chip, 4 chips per host; "
        "MFU 0.50 assumed (PaLM reports 46.2% for 540B on v4, Chowdhery et al. 2022 Table 3; nothing for small models).",
        "pallas_tpu"),
    "tpu-v5e": HardwareProfile(
        "tpu-v5e", 197e12, 16 * GB, 8, 0.45,
        "https://cloud.google.com/tpu/docs/v5e: 197 TFLOP/s bf16 and 16 GB HBM2 per chip, 8 chips per host "
        "(multi-host slices use 4-chip hosts), 256-chip pod; MaxText reports 56-67% MFU for 16B-128B on v5e-256, "
        "nothing for sub-1B, so 0.45 is assumed for the 470M/2.8B models.",
        "pallas_tpu"),
    "tpu-v5p": HardwareProfile(
        "tpu-v5p", 459e12, 95 * GB, 4, 0.50,
        "https://cloud.google.com/tpu/docs/v5p: 459 TFLOP/s bf16 and 95 GB HBM2e per chip, 4 chips per host; "
        "MFU 0.50 assumed.",
        "pallas_tpu"),
    "tpu-v6e": HardwareProfile(
        "tpu-v6e", 918e12, 32 * GB, 8, 0.45,
        "https://cloud.google.com/tpu/docs/v6e: Trillium, 918 TFLOP/s bf16 and 32 GB HBM per chip, 8 chips per "
        "host; MFU 0.45 assumed.",
        "pallas_tpu"),
    "gpu-h100": HardwareProfile(
        "gpu-h100", 989e12, 80 * GB, 8, 0.40,
        "NVIDIA H100 datasheet (https://www.nvidia.com/en-us/data-center/h100/), SXM: 989 TFLOP/s dense bf16 "
        "(1979 is with sparsity), 80 GB HBM3; 8 GPUs per HGX node; MFU 0.40 assumed.",
        "cudnn"),
    "gpu-h200": HardwareProfile(
        "gpu-h200", 989e12, 141 * GB, 8, 0.40,
        "NVIDIA H200 datasheet (https://www.nvidia.com/en-us/data-center/h200/), SXM: 989 TFLOP/s dense bf16 "
        "(same Hopper die as H100), 141 GB HBM3e; 8 GPUs per HGX node; MFU 0.40 assumed.",
        "cudnn"),
    "cpu": HardwareProfile(
        "cpu", 50e9, 24 * GiB, 1 << 16, 0.30,
        "This project's 2-core development machine: ~50 GFLOP/s float32 matmul, 24 GiB RAM shared by every faked "
        "device of the one host; MFU 0.30 assumed. Measure yours with benchmarks/bench_runtime.py.",
        "xla", memory_shared=True),
})


def profile(accelerator: str) -> HardwareProfile:
    """The profile of an accelerator name (a spec's mesh.accelerator, or its enum default)."""
    return PROFILES[getattr(accelerator, "value", accelerator)]


def default_attention(accelerator: str) -> str:
    """The attention implementation `kernels.attention: auto` resolves to."""
    return profile(accelerator).attention
