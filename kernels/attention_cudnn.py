"""Causal grouped-query attention through cuDNN's fused flash-attention kernel (NVIDIA GPUs).

Why: on H100/H200 the cuDNN kernel never writes the [L, L] score matrix to HBM
and skips the masked upper triangle, so attention memory is linear in L and
causal attention costs about half the FLOPs of the plain version. It is reached
through `jax.nn.dot_product_attention(implementation="cudnn")`, which raises
rather than falls back when cuDNN cannot take the shapes or dtypes (it wants
bfloat16/float16 inputs and a head width that is a multiple of 8, at most 128
or 256 depending on the cuDNN version), so a run never silently changes kernel.

Document masking: `jax.nn.dot_product_attention` has no segment-id argument; a
boolean mask is turned into a dense additive bias of shape [B, 1, L, L] in the
input dtype. That costs B*L*L*2 bytes per layer call (see `kernels.footprint`)
but keeps the kernel fused. cuDNN's packed-sequence path (per-document offsets)
is only exposed through private jax modules, so it is not used here.
"""

from __future__ import annotations

import jax

from kernels.attention_reference import check_attention_shapes


def cudnn_attention(
    q_BxLxHxK: jax.Array,
    k_BxLxGxK: jax.Array,
    v_BxLxGxK: jax.Array,
    segment_ids_BxL: jax.Array | None = None,
    *,
    scale: float | None = None,
) -> jax.Array:
    """Same contract as `kernels.attention_reference.xla_attention`; GPU only."""
    check_attention_shapes(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, segment_ids_BxL)
    mask_Bx1xLxL = None
    if segment_ids_BxL is not None:
        # Causality comes from is_causal; the mask adds only "same document".
        mask_Bx1xLxL = (segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :])[:, None]
    return jax.nn.dot_product_attention(
        q_BxLxHxK, k_BxLxGxK, v_BxLxGxK,
        mask=mask_Bx1xLxL,
        scale=scale,
        is_causal=True,
        implementation="cudnn",
    )
