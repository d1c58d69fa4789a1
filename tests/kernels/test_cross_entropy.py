"""The chunked output-layer loss equals the full-logits reference, repeats bit for bit, and never forms [N, V] logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jax_core

from kernels.cross_entropy import chunked_cross_entropy
from kernels.cross_entropy_reference import reference_cross_entropy

# float32: both sides compute the same float32 sums in a different order (chunks,
# one exp pass vs log_softmax), so they differ by a few float32 ulps of each term:
# relative 1e-5 leaves ~100 ulps of headroom; the absolute 1e-6 covers gradient
# entries that are near zero (sums of +/- terms), where relative error is meaningless.
F32_TOLERANCE = dict(rtol=1e-5, atol=1e-6)


def make_inputs(n_tokens, vocab, d_model, *, layout="VxD", masked=False, dtype=jnp.float32, seed=0):
    # numpy's generator, not jax.random: no per-shape compilation in a test suite of many shapes.
    rng = np.random.default_rng(seed)
    hidden = jnp.asarray(rng.standard_normal((n_tokens, d_model), np.float32), dtype)
    weight_shape = (vocab, d_model) if layout == "VxD" else (d_model, vocab)
    # Scale so logits are O(1) to O(10): a realistic, not saturated, softmax.
    weight = jnp.asarray(rng.standard_normal(weight_shape, np.float32) * (3 / np.sqrt(d_model)), dtype)
    targets = jnp.asarray(rng.integers(0, vocab, n_tokens), jnp.int32)
    weights = jnp.asarray(rng.random(n_tokens) < 0.7, jnp.float32) if masked else None
    return hidden, weight, targets, weights


def loss_and_grads(loss_fn, hidden, weight, targets, weights, **kwargs):
    """Loss and its gradients w.r.t. hidden and weight, jit-compiled like the runtime would."""
    fn = lambda h, w: loss_fn(h, w, targets, weights, **kwargs)
    return jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))(hidden, weight)


@pytest.mark.parametrize(
    "n_tokens, vocab, d_model, chunk_size, layout, masked",
    [
        (64, 300, 16, 16, "VxD", False),  # tokens a multiple of the chunk
        (50, 257, 24, 16, "VxD", True),  # tail chunk padded, masked tokens
        (50, 257, 24, 16, "DxV", True),  # untied output projection layout
        (7, 100, 8, 32, "VxD", True),  # fewer tokens than one chunk
        (33, 1000, 12, 1, "DxV", False),  # one token per chunk
    ],
)
def test_loss_and_gradients_match_reference(n_tokens, vocab, d_model, chunk_size, layout, masked):
    hidden, weight, targets, weights = make_inputs(n_tokens, vocab, d_model, layout=layout, masked=masked)
    loss, (d_hidden, d_weight) = loss_and_grads(
        chunked_cross_entropy, hidden, weight, targets, weights, chunk_size=chunk_size, weight_layout=layout
    )
    ref_loss, (ref_d_hidden, ref_d_weight) = loss_and_grads(
        reference_cross_entropy, hidden, weight, targets, weights, weight_layout=layout
    )
    assert loss.dtype == jnp.float32 and d_hidden.shape == hidden.shape and d_weight.shape == weight.shape
    np.testing.assert_allclose(loss, ref_loss, **F32_TOLERANCE)
    np.testing.assert_allclose(d_hidden, ref_d_hidden, **F32_TOLERANCE)
    np.testing.assert_allclose(d_weight, ref_d_weight, **F32_TOLERANCE)


def test_sum_reduction_leading_dims_and_weight_gradient():
    """[B, L, D] inputs, fractional weights, reduction="sum", and the gradient w.r.t. the weights."""
    hidden, weight, targets, _ = make_inputs(24, 129, 8)
    hidden_BxLxD, targets_BxL = hidden.reshape(2, 12, 8), targets.reshape(2, 12)
    weights_BxL = jnp.linspace(0.0, 1.0, 24).reshape(2, 12)

    def grads(loss_fn, **kwargs):
        fn = lambda h, w, m: loss_fn(h, w, targets_BxL, m, reduction="sum", **kwargs)
        return jax.jit(jax.value_and_grad(fn, argnums=(0, 1, 2)))(hidden_BxLxD, weight, weights_BxL)

    loss, got = grads(chunked_cross_entropy, chunk_size=5)
    ref_loss, want = grads(reference_cross_entropy)
    np.testing.assert_allclose(loss, ref_loss, **F32_TOLERANCE)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, **F32_TOLERANCE)


def test_all_masked_batch_gives_zero_loss_and_gradients_not_nan():
    hidden, weight, targets, _ = make_inputs(10, 50, 8)
    weights = jnp.zeros((10,), jnp.bool_)
    loss, (d_hidden, d_weight) = loss_and_grads(chunked_cross_entropy, hidden, weight, targets, weights, chunk_size=4)
    assert float(loss) == 0.0
    assert not jnp.any(d_hidden) and not jnp.any(d_weight)


def test_masked_tokens_may_carry_out_of_range_ids():
    """Padding is often labelled -1 (or anything): with weight 0 it must not poison the loss with NaN."""
    hidden, weight, targets, weights = make_inputs(20, 64, 8, masked=True)
    weights = weights.at[0].set(0.0)
    junk_targets = jnp.where(weights == 0, -1, targets).at[0].set(10_000)
    for loss_fn in (chunked_cross_entropy, reference_cross_entropy):
        loss, grads = loss_and_grads(loss_fn, hidden, weight, junk_targets, weights)
        want, _ = loss_and_grads(loss_fn, hidden, weight, targets, weights)
        assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads)
        np.testing.assert_allclose(loss, want, **F32_TOLERANCE)


def test_undifferentiated_loss_matches_differentiated_loss():
    """Eval uses the custom_vjp's primal path, training its fwd rule: both must give the same number."""
    hidden, weight, targets, weights = make_inputs(50, 257, 24, masked=True)
    eval_loss = jax.jit(lambda h, w: chunked_cross_entropy(h, w, targets, weights, chunk_size=16))(hidden, weight)
    train_loss, _ = loss_and_grads(chunked_cross_entropy, hidden, weight, targets, weights, chunk_size=16)
    assert np.asarray(eval_loss).tobytes() == np.asarray(train_loss).tobytes()


def test_bfloat16_inputs_accumulate_in_float32():
    hidden, weight, targets, weights = make_inputs(40, 300, 32, masked=True, dtype=jnp.bfloat16)
    loss, (d_hidden, d_weight) = loss_and_grads(
        chunked_cross_entropy, hidden, weight, targets, weights, chunk_size=16
    )
    # The reference in float32 on the same (bf16-representable) values.
    ref_loss, (ref_d_hidden, ref_d_weight) = loss_and_grads(
        reference_cross_entropy, hidden.astype(jnp.float32), weight.astype(jnp.float32), targets, weights
    )
    assert loss.dtype == jnp.float32 and d_hidden.dtype == jnp.bfloat16 and d_weight.dtype == jnp.bfloat16
    # Products of bf16 values are exact in float32, so the forward loss only differs by summation order.
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    # The logit gradient is rounded to bf16 (8 mantissa bits, ~4e-3 relative) before its matmuls and
    # the results are rounded to bf16 again: allow a few bf16 ulps, relative to the largest entry.
    for got, want in ((d_hidden, ref_d_hidden), (d_weight, ref_d_weight)):
        scale = float(jnp.max(jnp.abs(want)))
        np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=2e-2, atol=2e-2 * scale)


def test_repeats_bit_for_bit():
    hidden, weight, targets, weights = make_inputs(50, 257, 24, masked=True)
    results = [
        loss_and_grads(chunked_cross_entropy, hidden, weight, targets, weights, chunk_size=16)
        for _ in range(2)  # two jit calls: each compiles and runs the program afresh
    ]
    first, second = (jax.tree.leaves(r) for r in results)
    for a, b in zip(first, second):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def all_intermediate_shapes(jaxpr) -> list[tuple[int, ...]]:
    """Shapes of every value a jaxpr defines, including inside scan/jit/custom_vjp sub-jaxprs."""
    shapes = [tuple(v.aval.shape) for v in jaxpr.invars if hasattr(v.aval, "shape")]
    for eqn in jaxpr.eqns:
        shapes += [tuple(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape")]
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if isinstance(sub, jax_core.ClosedJaxpr):
                    shapes += all_intermediate_shapes(sub.jaxpr)
                elif isinstance(sub, jax_core.Jaxpr):
                    shapes += all_intermediate_shapes(sub)
    return shapes


def tokens_by_vocab_shapes(loss_fn, n_tokens, vocab, **kwargs):
    hidden, weight, targets, weights = make_inputs(n_tokens, vocab, 24, masked=True)
    fn = lambda h, w: loss_fn(h, w, targets, weights, **kwargs)
    jaxpr = jax.make_jaxpr(jax.value_and_grad(fn, argnums=(0, 1)))(hidden, weight).jaxpr
    # Padded token counts count as N too (200 tokens in chunks of 64 pad to 256).
    n_sizes = {n_tokens, -(-n_tokens // 64) * 64}
    return [s for s in all_intermediate_shapes(jaxpr) if vocab in s and n_sizes & set(s)]


def test_no_tokens_by_vocab_intermediate_in_forward_or_backward():
    """The claim of the module: value_and_grad never defines an array with both an N and a V axis."""
    # Sizes chosen to be distinct from each other, the chunk and d_model, so a match is not a coincidence.
    assert tokens_by_vocab_shapes(reference_cross_entropy, 200, 333), "the shape check must catch the reference"
    assert tokens_by_vocab_shapes(chunked_cross_entropy, 200, 333, chunk_size=64) == []


def test_compiled_program_needs_less_than_one_logits_array():
    """The same claim after XLA: the whole value_and_grad needs less scratch than [N, V] float32 logits."""
    n_tokens, vocab, chunk = 512, 8192, 64
    hidden, weight, targets, _ = make_inputs(n_tokens, vocab, 16)
    fn = lambda h, w: chunked_cross_entropy(h, w, targets, chunk_size=chunk)
    compiled = jax.jit(jax.value_and_grad(fn, argnums=(0, 1))).lower(hidden, weight).compile()
    assert compiled.memory_analysis().temp_size_in_bytes < n_tokens * vocab * 4 / 2


def test_rejects_mismatched_shapes_and_bad_arguments():
    hidden, weight, targets, _ = make_inputs(10, 50, 8)
    with pytest.raises(ValueError, match="weight of shape"):
        chunked_cross_entropy(hidden, weight.T, targets)
    with pytest.raises(ValueError, match="targets shape"):
        chunked_cross_entropy(hidden, weight, targets[:5])
    with pytest.raises(ValueError, match="weight_layout"):
        chunked_cross_entropy(hidden, weight, targets, weight_layout="VD")
    with pytest.raises(ValueError, match="reduction"):
        chunked_cross_entropy(hidden, weight, targets, reduction="max")
