"""Causal grouped-query attention through the Pallas splash-attention kernel (TPU).

Why: splash ("sparse flash") attention is the TPU kernel MaxText trains with: it
tiles q and kv into VMEM blocks, never writes the [L, L] scores to HBM, skips
the blocks the causal mask zeroes, and takes segment ids natively, so document
masking of packed sequences costs nothing extra. It handles grouped-query
attention itself (query head h reads kv head h // (H // G), as the reference).

The kernel is single-device; under a sharded mesh the caller wraps this function
in `shard_map` over the batch (and head) axes. `interpret=True` runs the Pallas
kernel in the Pallas interpreter on any backend, which is how it is tested on
CPU; it is slow and only meant for tests.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from kernels.attention_reference import check_attention_shapes

# Largest first: bigger tiles amortize per-block overhead; the kernel needs
# multiples of the 128-wide TPU lane dimension.
_BLOCK_CHOICES = (512, 256, 128)


def splash_attention(
    q_BxLxHxK: jax.Array,
    k_BxLxGxK: jax.Array,
    v_BxLxGxK: jax.Array,
    segment_ids_BxL: jax.Array | None = None,
    *,
    scale: float | None = None,
    interpret: bool = False,
) -> jax.Array:
    """Same contract as `kernels.attention_reference.xla_attention`; TPU, or anywhere with interpret=True.

    L must be a multiple of 128 (the kernel's tile constraint); the runtime's
    sequence lengths (2,048 / 8,192) are.
    """
    # Imported here: the Pallas TPU modules are only needed when this kernel runs.
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as masks

    check_attention_shapes(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, segment_ids_BxL)
    _, length, n_heads, head_dim = q_BxLxHxK.shape
    block = next((b for b in _BLOCK_CHOICES if length % b == 0), None)
    if block is None:
        raise ValueError(f"pallas_tpu attention needs a sequence length that is a multiple of 128, got {length}")
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale

    block_sizes = splash.BlockSizes(
        block_q=block, block_kv=block, block_kv_compute=block,
        block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
        block_q_dq=block, block_kv_dq=block,
    )
    causal = masks.MultiHeadMask([masks.CausalMask((length, length)) for _ in range(n_heads)])
    kernel = splash.make_splash_mha_single_device(causal, block_sizes=block_sizes, interpret=interpret)

    # The kernel takes one sequence, heads leading: [H, L, K] for q, [G, L, K] for k and v;
    # it applies no logit scale, so q is scaled first (in float32, then back to q's dtype).
    q_BxHxLxK = (jnp.swapaxes(q_BxLxHxK, 1, 2).astype(jnp.float32) * scale).astype(q_BxLxHxK.dtype)
    k_BxGxLxK = jnp.swapaxes(k_BxLxGxK, 1, 2)
    v_BxGxLxK = jnp.swapaxes(v_BxLxGxK, 1, 2)
    if segment_ids_BxL is None:
        out_BxHxLxK = jax.vmap(kernel)(q_BxHxLxK, k_BxGxLxK, v_BxGxLxK)
    else:
        segment_ids_BxL = segment_ids_BxL.astype(jnp.int32)
        out_BxHxLxK = jax.vmap(
            lambda q, k, v, seg: kernel(q, k, v, segment_ids=splash.SegmentIds(q=seg, kv=seg))
        )(q_BxHxLxK, k_BxGxLxK, v_BxGxLxK, segment_ids_BxL)
    return jnp.swapaxes(out_BxHxLxK, 1, 2).astype(q_BxLxHxK.dtype)
