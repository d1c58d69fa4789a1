"""Output-layer softmax cross-entropy fused with the output projection, one chunk of tokens at a time.

Why: at a 256k vocabulary the [tokens, vocab] float32 logits of one batch are the
largest activation of the whole model (4,096 tokens -> 4 GiB, and autodiff keeps
as much again for their gradient). This kernel never holds more than one
[chunk, vocab] block of logits, in the forward pass or the backward pass.

How: a `jax.custom_vjp` around a `lax.scan` over token chunks. The scan that
computes the loss under differentiation also computes the gradient of the loss
sum w.r.t. the hidden states and the output weight while each chunk's logits
are at hand: the loss is a scalar, so its backward pass is just those
gradients times the incoming cotangent. This costs three matmuls per chunk
(logits, d hidden, d weight), the same as the naive version; the textbook
alternative, recomputing each chunk's logits in the backward pass, costs a
fourth. The price is that the [V, D] float32 weight gradient and the [N, D]
hidden gradient are residuals from the forward pass onwards; since the loss is
the last op of the forward pass and the first of the backward pass, their
lifetime is what it would have been anyway. Without differentiation (eval),
only the loss is computed.

Determinism: chunks are visited in a fixed order by `lax.scan`, the weight
gradient is accumulated in float32 in that order, and nothing uses atomics or
scatter-adds, so a fixed compiled program repeats bit for bit.

Precision: the matmuls take the inputs' dtype (bfloat16 or float32) and
accumulate in float32; softmax, log-sum-exp and both gradient accumulators are
float32. With bfloat16 inputs the logit gradient is rounded to bfloat16 before
its two matmuls, as mixed-precision autodiff would.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from kernels.cross_entropy_reference import flatten_tokens, reduce_loss

WeightLayout = Literal["VxD", "DxV"]
Reduction = Literal["mean", "sum"]

# One (logits, d_hidden, d_weight) einsum triple per layout of the output weight,
# so neither layout is ever transposed in memory.
_EINSUMS = {
    "VxD": ("cd,vd->cv", "cv,vd->cd", "cv,cd->vd"),
    "DxV": ("cd,dv->cv", "cv,dv->cd", "cv,cd->dv"),
}


def chunked_cross_entropy(
    hidden_NxD: jax.Array,
    weight: jax.Array,
    targets_N: jax.Array,
    weights_N: jax.Array | None = None,
    *,
    chunk_size: int = 1024,
    weight_layout: WeightLayout = "VxD",
    reduction: Reduction = "mean",
    vocab_axis: str | None = None,
) -> jax.Array:
    """Weighted softmax cross-entropy of `hidden @ weight` against `targets`, never forming [N, V] logits.

    Args:
      hidden_NxD: final (normed) hidden states; any leading shape [..., D], flattened
        to N tokens.
      weight: output weight, [V, D] (`weight_layout="VxD"`: the tied embedding table,
        used as is) or [D, V] (`"DxV"`: an untied output projection, used as is).
      targets_N: int token ids, shape [...] matching hidden's leading shape; in
        [0, V) wherever the weight is nonzero, anything (e.g. -1) where it is 0.
      weights_N: optional per-token weights (bool or 0/1 mask, or fractional); None
        means every token counts once. Differentiable (its gradient is the per-token
        loss), though callers rarely need that.
      chunk_size: tokens per chunk. The transient memory is at most two
        [chunk_size, V] float32 blocks (plus a bfloat16 one with bfloat16 inputs)
        and a float32 copy of the weight gradient (`kernels.footprint` has the
        formula); N need not be a multiple (the tail chunk is zero-padded with
        weight 0). A few hundred tokens already keep the matmuls efficient.
      weight_layout: "VxD" or "DxV", see `weight`.
      reduction: "mean" returns sum(w * nll) / sum(w) (0 if every weight is 0);
        "sum" returns sum(w * nll), for callers that accumulate microbatches or
        data-parallel shards and divide by the global count themselves.
      vocab_axis: inside `shard_map` only: the mesh axis `weight`'s vocabulary is
        split over (vocabulary parallelism, as Megatron's). Each device then
        holds the contiguous vocab block `axis_index * V_local ...`; row max,
        row sum and target logit are combined over the axis per chunk ([chunk]
        vectors, never a [chunk, vocab] block), the weight gradient stays
        local, and the hidden gradient is this device's vocab block's part
        (the enclosing shard_map's transpose adds the parts up over the axis).

    Returns:
      A float32 scalar, equal (to float32 rounding) to
      `kernels.cross_entropy_reference.reference_cross_entropy` with the same args.
    """
    if weight_layout not in _EINSUMS:
        raise ValueError(f"weight_layout must be 'VxD' or 'DxV', got {weight_layout!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    hidden_NxD, targets_N, weights_N = flatten_tokens(hidden_NxD, targets_N, weights_N)
    n_tokens, d_model = hidden_NxD.shape
    d_axis = 1 if weight_layout == "VxD" else 0
    if weight.ndim != 2 or weight.shape[d_axis] != d_model:
        raise ValueError(
            f"weight of shape {weight.shape} does not match layout {weight_layout} and d_model {d_model}"
        )

    chunk = max(1, min(chunk_size, n_tokens))
    n_chunks = -(-n_tokens // chunk)
    pad = n_chunks * chunk - n_tokens
    # Padded tokens have weight 0: they add nothing to the loss or the gradients.
    hidden_KxCxD = jnp.pad(hidden_NxD, ((0, pad), (0, 0))).reshape(n_chunks, chunk, d_model)
    targets_KxC = jnp.pad(targets_N, (0, pad)).reshape(n_chunks, chunk)
    weights_KxC = jnp.pad(weights_N, (0, pad)).reshape(n_chunks, chunk)

    static = _Static(weight_layout, np.dtype(hidden_NxD.dtype), np.dtype(weight.dtype), vocab_axis)
    total = _weighted_nll_sum(static, hidden_KxCxD, weight, targets_KxC, weights_KxC)
    return reduce_loss(total, weights_N, reduction)


class _Static(NamedTuple):
    """Hashable, non-differentiable facts the backward pass needs: layout and input dtypes."""

    layout: str
    hidden_dtype: np.dtype
    weight_dtype: np.dtype
    vocab_axis: str | None = None  # mesh axis the weight's vocabulary is split over (inside shard_map)


def _chunk_softmax(static, hidden_CxD, weight, targets_C):
    """One chunk's unnormalized softmax exp(logits - max), its row sums, and the per-token nll.

    Both passes share one exp over the [C, V] block: the forward needs its sum,
    the gradient needs it divided by that sum.
    """
    logits_eq, _, _ = _EINSUMS[static.layout]
    dtype = jnp.result_type(hidden_CxD, weight)
    logits_CxV = jnp.einsum(
        logits_eq, hidden_CxD.astype(dtype), weight.astype(dtype), preferred_element_type=jnp.float32
    )
    max_C = jnp.max(logits_CxV, axis=-1)
    if static.vocab_axis is None:
        exp_CxV = jnp.exp(logits_CxV - max_C[:, None])
        sum_C = jnp.sum(exp_CxV, axis=-1)
        target_logit_C = jnp.take_along_axis(logits_CxV, targets_C[:, None], axis=-1)[:, 0]
    else:  # this device holds one vocab block: combine the row statistics over the axis
        max_C = jax.lax.pmax(max_C, static.vocab_axis)
        exp_CxV = jnp.exp(logits_CxV - max_C[:, None])
        sum_C = jax.lax.psum(jnp.sum(exp_CxV, axis=-1), static.vocab_axis)
        local_targets_C = _local_targets(static, targets_C, logits_CxV.shape[-1])
        in_block_C = (local_targets_C >= 0) & (local_targets_C < logits_CxV.shape[-1])
        safe_C = jnp.where(in_block_C, local_targets_C, 0)
        local_logit_C = jnp.take_along_axis(logits_CxV, safe_C[:, None], axis=-1)[:, 0]
        target_logit_C = jax.lax.psum(jnp.where(in_block_C, local_logit_C, 0.0), static.vocab_axis)
    nll_C = max_C + jnp.log(sum_C) - target_logit_C
    return exp_CxV, sum_C, nll_C


def _local_targets(static, targets_C, local_vocab: int):
    """Target ids relative to this device's vocab block (all of them without vocab parallelism)."""
    if static.vocab_axis is None:
        return targets_C
    return targets_C - jax.lax.axis_index(static.vocab_axis) * local_vocab


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _weighted_nll_sum(static, hidden_KxCxD, weight, targets_KxC, weights_KxC):
    """sum(weights * nll) over all chunks; the primal (undifferentiated) path computes only the loss."""

    def body(total, xs):
        hidden_CxD, targets_C, weights_C = xs
        _, _, nll_C = _chunk_softmax(static, hidden_CxD, weight, targets_C)
        return total + jnp.sum(weights_C * nll_C), None

    total, _ = jax.lax.scan(body, jnp.float32(0), (hidden_KxCxD, targets_KxC, weights_KxC))
    return total


def _weighted_nll_sum_fwd(static, hidden_KxCxD, weight, targets_KxC, weights_KxC):
    """Loss plus the gradients of the loss sum, chunk by chunk, while each chunk's logits exist."""
    _, d_hidden_eq, d_weight_eq = _EINSUMS[static.layout]
    dtype = jnp.result_type(hidden_KxCxD, weight)

    def body(carry, xs):
        total, d_weight_acc = carry
        hidden_CxD, targets_C, weights_C = xs
        exp_CxV, sum_C, nll_C = _chunk_softmax(static, hidden_CxD, weight, targets_C)
        # d(sum_n w_n nll_n)/d logits = w_n (softmax_n - onehot(target_n)).
        probs_CxV = exp_CxV / sum_C[:, None]
        local_targets_C = _local_targets(static, targets_C, probs_CxV.shape[-1])
        is_target_CxV = jax.lax.broadcasted_iota(jnp.int32, probs_CxV.shape, 1) == local_targets_C[:, None]
        d_logits_CxV = (jnp.where(is_target_CxV, probs_CxV - 1.0, probs_CxV) * weights_C[:, None]).astype(dtype)
        d_hidden_CxD = jnp.einsum(
            d_hidden_eq, d_logits_CxV, weight.astype(dtype), preferred_element_type=jnp.float32
        )
        d_weight_acc = d_weight_acc + jnp.einsum(
            d_weight_eq, d_logits_CxV, hidden_CxD.astype(dtype), preferred_element_type=jnp.float32
        )
        return (total + jnp.sum(weights_C * nll_C), d_weight_acc), (nll_C, d_hidden_CxD)

    init = (jnp.float32(0), jnp.zeros(weight.shape, jnp.float32))
    (total, d_weight), (nll_KxC, d_hidden_KxCxD) = jax.lax.scan(
        body, init, (hidden_KxCxD, targets_KxC, weights_KxC)
    )
    return total, (nll_KxC, d_hidden_KxCxD, d_weight)


def _weighted_nll_sum_bwd(static, residuals, g):
    """Scales the gradients computed in the forward pass by the incoming cotangent."""
    nll_KxC, d_hidden_KxCxD, d_weight = residuals
    if static.vocab_axis is not None:
        # Every device of the vocab axis returned the same (combined) loss; the loss depends on each
        # device's weight block through all of those copies, so the block's cotangent is their sum.
        g = jax.lax.psum(g, static.vocab_axis)
    return (
        (g * d_hidden_KxCxD).astype(static.hidden_dtype),
        (g * d_weight).astype(static.weight_dtype),
        None,  # integer targets have no cotangent
        g * nll_KxC,
    )


_weighted_nll_sum.defvjp(_weighted_nll_sum_fwd, _weighted_nll_sum_bwd)
