"""Output-layer softmax cross-entropy written the obvious way, as the yardstick for the chunked kernel.

It materializes the full [tokens, vocab] float32 logits (and, under autodiff, as
much again for their gradient), which is exactly what `kernels.cross_entropy`
avoids; the tests and the benchmark compare the two. Same signature and
semantics as `kernels.cross_entropy.chunked_cross_entropy`, minus the chunking.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

WeightLayout = Literal["VxD", "DxV"]
Reduction = Literal["mean", "sum"]

# einsum of the logits for each accepted layout of the output weight.
LOGITS_EINSUM = {"VxD": "nd,vd->nv", "DxV": "nd,dv->nv"}


def reference_cross_entropy(
    hidden_NxD: jax.Array,
    weight: jax.Array,
    targets_N: jax.Array,
    weights_N: jax.Array | None = None,
    *,
    weight_layout: WeightLayout = "VxD",
    reduction: Reduction = "mean",
) -> jax.Array:
    """Weighted softmax cross-entropy of `hidden @ weight` against `targets`, via full logits.

    Args:
      hidden_NxD: final hidden states; any leading shape [..., D] (flattened to N).
      weight: output weight, [V, D] (`weight_layout="VxD"`, the tied embedding table)
        or [D, V] (`"DxV"`, an untied output projection).
      targets_N: int token ids, shape [...] matching hidden's leading shape; in
        [0, V) wherever the weight is nonzero, anything (e.g. -1) where it is 0.
      weights_N: optional per-token weights (a 0/1 or bool mask, or fractional);
        None means every token counts once.
      weight_layout: which of the two layouts `weight` has.
      reduction: "mean" returns sum(w * nll) / sum(w) (0 when sum(w) == 0);
        "sum" returns sum(w * nll), for callers that accumulate over microbatches
        and divide by the total count themselves.

    Returns:
      A float32 scalar.
    """
    hidden_NxD, targets_N, weights_N = flatten_tokens(hidden_NxD, targets_N, weights_N)
    logits_NxV = jnp.einsum(
        LOGITS_EINSUM[weight_layout], hidden_NxD, weight, preferred_element_type=jnp.float32
    )
    logprobs_NxV = jax.nn.log_softmax(logits_NxV, axis=-1)
    nll_N = -jnp.take_along_axis(logprobs_NxV, targets_N[:, None], axis=-1)[:, 0]
    return reduce_loss(jnp.sum(weights_N * nll_N), weights_N, reduction)


def flatten_tokens(
    hidden_NxD: jax.Array, targets_N: jax.Array, weights_N: jax.Array | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Flattens [..., D] hidden and [...] targets/weights to one token axis; weights become float32.

    Shared by the reference and the chunked kernel so both accept exactly the same inputs.
    """
    d_model = hidden_NxD.shape[-1]
    if hidden_NxD.shape[:-1] != targets_N.shape:
        raise ValueError(
            f"hidden leading shape {hidden_NxD.shape[:-1]} != targets shape {targets_N.shape}"
        )
    if weights_N is None:
        weights_N = jnp.ones(targets_N.shape, jnp.float32)
    elif weights_N.shape != targets_N.shape:
        raise ValueError(f"weights shape {weights_N.shape} != targets shape {targets_N.shape}")
    weights_N = weights_N.reshape(-1).astype(jnp.float32)
    # Masked tokens may carry any id (e.g. -1 for padding); pointing them at id 0
    # keeps an out-of-range id from turning their zero-weighted loss into NaN.
    targets_N = jnp.where(weights_N != 0, targets_N.reshape(-1).astype(jnp.int32), 0)
    return hidden_NxD.reshape(-1, d_model), targets_N, weights_N


def reduce_loss(total: jax.Array, weights_N: jax.Array, reduction: Reduction) -> jax.Array:
    """Turns a weighted loss sum into the requested reduction; an all-masked batch gives 0, not NaN."""
    if reduction == "sum":
        return total
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    count = jnp.sum(weights_N)
    # A safe denominator instead of where(count > 0, total / count, 0): the
    # untaken branch's gradient would be 0 * inf = NaN.
    return total / jnp.where(count > 0, count, 1.0)
