"""Causal grouped-query attention in plain jnp: the "xla" implementation and the reference of the others.

Why: it runs on every backend and is short enough to check by eye, so the fused
kernels (cuDNN, Pallas splash) are tested against it. Its cost is the full
[B, H, L, L] float32 score matrix (and, under autodiff, the probabilities kept
for the backward pass), which is what the fused kernels avoid.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def xla_attention(
    q_BxLxHxK: jax.Array,
    k_BxLxGxK: jax.Array,
    v_BxLxGxK: jax.Array,
    segment_ids_BxL: jax.Array | None = None,
    *,
    scale: float | None = None,
) -> jax.Array:
    """softmax(q k^T * scale + causal/segment mask) v, per head, with G kv heads shared by H/G query heads.

    Args:
      q_BxLxHxK: queries; H query heads of width K.
      k_BxLxGxK, v_BxLxGxK: keys and values; G kv heads, G divides H. Query head h
        reads kv head h // (H // G) (consecutive query heads share a kv head, as
        in `jax.nn.dot_product_attention`).
      segment_ids_BxL: optional document ids of a packed sequence; a token attends
        only to earlier-or-same positions with the same id. None: one document.
      scale: logit scale; default 1 / sqrt(K).

    Returns:
      [B, L, H, K] in q's dtype. Scores, softmax and the probability-value
      matmul's accumulation are float32.
    """
    check_attention_shapes(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, segment_ids_BxL)
    batch, length, n_heads, head_dim = q_BxLxHxK.shape
    n_kv_heads = k_BxLxGxK.shape[2]
    group = n_heads // n_kv_heads
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale

    # Split query heads into (kv head, member of its group) so k and v are shared, not repeated.
    q_BxLxGxRxK = q_BxLxHxK.reshape(batch, length, n_kv_heads, group, head_dim)
    scores_BxGxRxLxL = jnp.einsum(
        "bqgrk,bsgk->bgrqs", q_BxLxGxRxK, k_BxLxGxK, preferred_element_type=jnp.float32
    ) * scale
    allowed_BxLxL = attention_mask(length, segment_ids_BxL)
    scores_BxGxRxLxL = jnp.where(
        allowed_BxLxL[:, None, None, :, :], scores_BxGxRxLxL, jnp.finfo(jnp.float32).min
    )
    probs_BxGxRxLxL = jax.nn.softmax(scores_BxGxRxLxL, axis=-1)
    out_BxLxGxRxK = jnp.einsum(
        "bgrqs,bsgk->bqgrk", probs_BxGxRxLxL.astype(v_BxLxGxK.dtype), v_BxLxGxK,
        preferred_element_type=jnp.float32,
    )
    return out_BxLxGxRxK.reshape(batch, length, n_heads, head_dim).astype(q_BxLxHxK.dtype)


def attention_mask(length: int, segment_ids_BxL: jax.Array | None) -> jax.Array:
    """[B or 1, L, L] bool: query i may read key j iff j <= i and both are in the same segment.

    The diagonal is always allowed, so no row is fully masked (no NaN from an
    empty softmax), padding included.
    """
    causal_LxL = jnp.tril(jnp.ones((length, length), jnp.bool_))
    if segment_ids_BxL is None:
        return causal_LxL[None]
    same_segment_BxLxL = segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :]
    return causal_LxL[None] & same_segment_BxLxL


def check_attention_shapes(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, segment_ids_BxL) -> None:
    """Raises ValueError naming the mismatch; shared by every implementation so they accept the same inputs."""
    if q_BxLxHxK.ndim != 4 or k_BxLxGxK.ndim != 4:
        raise ValueError(f"q and k must be [B, L, heads, K], got {q_BxLxHxK.shape} and {k_BxLxGxK.shape}")
    if k_BxLxGxK.shape != v_BxLxGxK.shape:
        raise ValueError(f"k {k_BxLxGxK.shape} and v {v_BxLxGxK.shape} must have the same shape")
    batch, length, n_heads, head_dim = q_BxLxHxK.shape
    kb, kl, n_kv_heads, kk = k_BxLxGxK.shape
    if (kb, kl, kk) != (batch, length, head_dim):
        raise ValueError(f"k {k_BxLxGxK.shape} does not match q {q_BxLxHxK.shape} in batch, length or head width")
    if n_heads % n_kv_heads:
        raise ValueError(f"n_kv_heads={n_kv_heads} must divide n_heads={n_heads}")
    if segment_ids_BxL is not None and segment_ids_BxL.shape != (batch, length):
        raise ValueError(f"segment_ids shape {segment_ids_BxL.shape} != (batch, length) = {(batch, length)}")
