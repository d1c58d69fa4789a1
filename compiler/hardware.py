"""Accelerator profiles, as data, with the source of every number.

Why data and not code: the dry run's price is FLOPs ÷ (chips × peak × MFU); a
user checking a number must find where it came from, and adding a profile
must not need a new branch anywhere else.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType


@dataclasses.dataclass(frozen=True)
class HardwareProfile:
    name: str
    peak_flops: float  # dense bf16 FLOP/s per chip
    memory_bytes: int  # HBM (or RAM) per chip
    chips_per_host: int
    default_mfu: float  # model-FLOPs utilization assumed by the dry run
    source: str  # where peak, memory and MFU come from
    attention: str  # best attention implementation on this accelerator (kernels/attention.py)


GiB = 1024**3
GB = 10**9

PROFILES = MappingProxyType({
    "tpu-v4": HardwareProfile(
        "tpu-v4", 275e12, 32 * GiB, 4, 0.50,
        "Cloud TPU v4 docs: 275 TFLOP/s bf16, 32 GiB HBM, 4 chips/host; MFU 0.50 assumed for sub-1B/few-B dense models.",
        "pallas_tpu"),
    "tpu-v5e": HardwareProfile(
        "tpu-v5e", 197e12, 16 * GB, 8, 0.45,
        "Cloud TPU v5e docs: 197 TFLOP/s bf16, 16 GB HBM, 8 chips/host, 256-chip pod; MaxText reports 56-67% MFU for "
        "16B-128B on v5e-256, nothing for sub-1B, so 0.45 is assumed for the 470M/2.8B models.",
        "pallas_tpu"),
    "tpu-v5p": HardwareProfile(
        "tpu-v5p", 459e12, 95 * GB, 4, 0.50,
        "Cloud TPU v5p docs: 459 TFLOP/s bf16, 95 GB HBM, 4 chips/host; MFU 0.50 assumed.",
        "pallas_tpu"),
    "tpu-v6e": HardwareProfile(
        "tpu-v6e", 918e12, 32 * GB, 8, 0.45,
        "Cloud TPU v6e (Trillium) docs: 918 TFLOP/s bf16, 32 GB HBM, 8 chips/host; MFU 0.45 assumed.",
        "pallas_tpu"),
    "gpu-h100": HardwareProfile(
        "gpu-h100", 989e12, 80 * GB, 8, 0.40,
        "NVIDIA H100 SXM datasheet: 989 TFLOP/s dense bf16, 80 GB HBM3; 8 GPUs/node; MFU 0.40 assumed.",
        "cudnn"),
    "gpu-h200": HardwareProfile(
        "gpu-h200", 989e12, 141 * GB, 8, 0.40,
        "NVIDIA H200 SXM datasheet: 989 TFLOP/s dense bf16 (same die as H100), 141 GB HBM3e; MFU 0.40 assumed.",
        "cudnn"),
    "cpu": HardwareProfile(
        "cpu", 50e9, 24 * GiB, 1 << 16, 0.30,
        "This project's 2-core development machine: ~50 GFLOP/s float32 matmul, 24 GiB RAM (faked devices share one "
        "host); MFU 0.30 assumed. Measure yours with benchmarks/bench_runtime.py.",
        "xla"),
})


def profile(accelerator: str) -> HardwareProfile:
    return PROFILES[accelerator]


def default_attention(accelerator: str) -> str:
    """The attention implementation `kernels.attention: auto` resolves to."""
    return PROFILES[accelerator].attention
