"""Causal grouped-query attention with document masking, dispatched to one named implementation.

Why one entry point: the model calls `attention(...)` with the implementation
named in the run spec, so which kernel ran is decided before the run is hashed
and is the same on replay; the kernels differ in the last bits of their
results, so "pick the fastest at run time" would break bit-exact replays.
`select_attention_implementation` is the pure function the compiler uses to
turn `attention: auto` into a name for the spec's accelerator.

Implementations (all: q [B, L, H, K], k and v [B, L, G, K] with G dividing H,
optional segment ids [B, L]; output [B, L, H, K]):
  * "xla": plain jnp (`kernels.attention_reference`), any backend, O(L^2) memory.
  * "cudnn": cuDNN fused flash attention (`kernels.attention_cudnn`), NVIDIA GPU.
  * "pallas_tpu": Pallas splash attention (`kernels.attention_splash`), TPU.
The GPU and TPU modules are imported only when their implementation is called.
"""

from __future__ import annotations

import importlib

import jax

IMPLEMENTATIONS = ("xla", "cudnn", "pallas_tpu")

# implementation -> (module, function); resolved lazily by `attention`.
_KERNELS = {
    "xla": ("kernels.attention_reference", "xla_attention"),
    "cudnn": ("kernels.attention_cudnn", "cudnn_attention"),
    "pallas_tpu": ("kernels.attention_splash", "splash_attention"),
}

# Accelerator kinds of the run spec's mesh (compiler.spec.Accelerator values).
_BEST_FOR_ACCELERATOR = {
    "cpu": "xla",
    "gpu-h100": "cudnn",
    "gpu-h200": "cudnn",
    "tpu-v4": "pallas_tpu",
    "tpu-v5e": "pallas_tpu",
    "tpu-v5p": "pallas_tpu",
    "tpu-v6e": "pallas_tpu",
}


def select_attention_implementation(accelerator: str) -> str:
    """The fastest implementation for an accelerator kind ("cpu", "gpu-h100", "tpu-v5e", ...).

    Pure and strict: an unknown kind raises ValueError listing the known ones,
    rather than guessing, because the answer changes the trained bits.
    """
    try:
        return _BEST_FOR_ACCELERATOR[accelerator]
    except KeyError:
        known = ", ".join(sorted(_BEST_FOR_ACCELERATOR))
        raise ValueError(f"unknown accelerator kind {accelerator!r}; known: {known}") from None


def attention(
    q_BxLxHxK: jax.Array,
    k_BxLxGxK: jax.Array,
    v_BxLxGxK: jax.Array,
    segment_ids_BxL: jax.Array | None = None,
    *,
    implementation: str,
    scale: float | None = None,
) -> jax.Array:
    """Causal attention where token i reads tokens j <= i of the same segment.

    Args:
      q_BxLxHxK: queries, H heads of width K.
      k_BxLxGxK, v_BxLxGxK: keys and values, G kv heads (G divides H; query head h
        reads kv head h // (H // G)).
      segment_ids_BxL: optional int document ids within each packed sequence; None
        means the whole row is one document.
      implementation: one of IMPLEMENTATIONS; no default, so the caller states it.
      scale: logit scale, default 1 / sqrt(K).

    Returns:
      [B, L, H, K] in q's dtype.
    """
    if implementation not in _KERNELS:
        raise ValueError(f"unknown attention implementation {implementation!r}; choose one of {IMPLEMENTATIONS}")
    module_name, function_name = _KERNELS[implementation]
    kernel = getattr(importlib.import_module(module_name), function_name)
    return kernel(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, segment_ids_BxL, scale=scale)
