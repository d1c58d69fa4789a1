"""The jax-free memory formulas agree with XLA's buffer assignment of the real kernels."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from kernels import footprint
from kernels.attention import attention
from kernels.cross_entropy import chunked_cross_entropy
from kernels.cross_entropy_reference import reference_cross_entropy


def test_footprint_imports_no_jax():
    """The compiler imports this module and must never import jax."""
    code = "import sys, kernels.footprint\nassert 'jax' not in sys.modules and 'numpy' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)


def compiled_temp_bytes(fn, *shapes) -> int:
    """XLA's scratch memory for fn's value_and_grad w.r.t. its first arguments (not inputs, not outputs)."""
    n_diff = sum(1 for s in shapes if jnp.issubdtype(s.dtype, jnp.floating))
    grad_fn = jax.value_and_grad(fn, argnums=tuple(range(n_diff)))
    return jax.jit(grad_fn).lower(*shapes).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize(
    "tokens, vocab, d_model, chunk",
    [(1024, 32768, 128, 128), (1000, 32768, 128, 256), (512, 65536, 256, 512)],
)
def test_cross_entropy_estimates_bound_compiled_memory(tokens, vocab, d_model, chunk, dtype):
    shapes = (
        jax.ShapeDtypeStruct((tokens, d_model), dtype),
        jax.ShapeDtypeStruct((vocab, d_model), dtype),
        jax.ShapeDtypeStruct((tokens,), jnp.int32),
    )
    dtype_bytes = jnp.dtype(dtype).itemsize
    chunked = compiled_temp_bytes(lambda h, w, t: chunked_cross_entropy(h, w, t, chunk_size=chunk), *shapes)
    estimate = footprint.cross_entropy_peak_bytes(tokens, vocab, d_model, chunk, "chunked", dtype_bytes=dtype_bytes)
    # An upper bound (a dry run must not under-price), loose by at most the one
    # [chunk, vocab] block XLA:CPU sometimes reuses.
    assert chunked <= estimate <= 1.6 * chunked
    reference = compiled_temp_bytes(lambda h, w, t: reference_cross_entropy(h, w, t), *shapes)
    estimate = footprint.cross_entropy_peak_bytes(tokens, vocab, d_model, chunk, "reference", dtype_bytes=dtype_bytes)
    assert reference <= estimate <= 1.2 * reference


@pytest.mark.parametrize(
    "tokens, vocab, d_model, chunk, dtype",
    [(16384, 256000, 1024, 1024, jnp.bfloat16), (4000, 128000, 512, 512, jnp.bfloat16),
     (4000, 128000, 512, 512, jnp.float32)],
)
def test_fused_cross_entropy_estimate_matches_libtpus_v5e_compile(tokens, vocab, d_model, chunk, dtype):
    """The TPU form (`fused=True`, what compiler.memory prices accelerators with) against libtpu's v5e compile.

    Sizes whose [chunk, vocab] blocks do not fit on-chip memory (smaller ones
    never touch HBM). XLA reports one peak; which inputs and outputs are live
    at it is not said, so the kernel's own buffers lie between the peak less
    inputs and outputs and the peak less inputs. A second [chunk, vocab] block
    written to memory, or an accumulator fused away, falls outside.
    """
    from runtime import aot

    one = jax.sharding.SingleDeviceSharding(aot.devices("v5e:2x2")[0])
    shapes = (jax.ShapeDtypeStruct((tokens, d_model), dtype, sharding=one),
              jax.ShapeDtypeStruct((vocab, d_model), dtype, sharding=one),
              jax.ShapeDtypeStruct((tokens,), jnp.int32, sharding=one))
    grad_fn = jax.value_and_grad(lambda h, w, t: chunked_cross_entropy(h, w, t, chunk_size=chunk), argnums=(0, 1))
    stats = jax.jit(grad_fn).lower(*shapes).compile().memory_analysis()
    dtype_bytes = jnp.dtype(dtype).itemsize
    estimate = footprint.cross_entropy_peak_bytes(tokens, vocab, d_model, chunk, "chunked", dtype_bytes=dtype_bytes,
                                                  fused=True)
    beyond_inputs = stats.peak_memory_in_bytes - stats.argument_size_in_bytes
    assert beyond_inputs - stats.output_size_in_bytes <= estimate <= beyond_inputs
    assert estimate < footprint.cross_entropy_peak_bytes(tokens, vocab, d_model, chunk, "chunked",
                                                         dtype_bytes=dtype_bytes)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("batch, length, n_heads, n_kv_heads, head_dim", [(2, 512, 8, 2, 64), (1, 1024, 4, 4, 32)])
def test_xla_attention_estimates_match_residuals_and_compiled_memory(batch, length, n_heads, n_kv_heads, head_dim, dtype):
    dtype_bytes = jnp.dtype(dtype).itemsize
    q = jax.ShapeDtypeStruct((batch, length, n_heads, head_dim), dtype)
    kv = jax.ShapeDtypeStruct((batch, length, n_kv_heads, head_dim), dtype)
    segment_ids = jax.ShapeDtypeStruct((batch, length), jnp.int32)
    loss = lambda q, k, v, s: jnp.sum(attention(q, k, v, s, implementation="xla").astype(jnp.float32))
    args = (batch, length, n_heads, n_kv_heads, head_dim, "xla")

    # What autodiff keeps for the backward pass: the residuals with an [L, L] tail.
    _, vjp_fn = jax.eval_shape(lambda *a: jax.vjp(lambda q, k, v: loss(q, k, v, a[3]), *a[:3]), q, kv, kv, segment_ids)
    saved = sum(
        leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(vjp_fn) if tuple(leaf.shape[-2:]) == (length, length)
    )
    assert footprint.attention_activation_bytes(*args, dtype_bytes=dtype_bytes, segment_ids=True) == saved

    peak = compiled_temp_bytes(loss, q, kv, kv, segment_ids)
    estimate = footprint.attention_peak_bytes(*args, dtype_bytes=dtype_bytes, segment_ids=True)
    assert 0.9 * peak <= estimate <= 1.15 * peak


@pytest.mark.parametrize("implementation", ["cudnn", "pallas_tpu"])
def test_fused_attention_memory_is_linear_in_sequence_length(implementation):
    """The point of the fused kernels: no [L, L] term (cuDNN's document-mask bias aside)."""
    for fn in (footprint.attention_activation_bytes, footprint.attention_peak_bytes):
        short, long = (fn(4, length, 16, 4, 128, implementation) for length in (2048, 8192))
        assert long == 4 * short
    # At the recipes' 8k context, the plain version keeps ~100x more per layer.
    xla = footprint.attention_activation_bytes(1, 8192, 16, 16, 128, "xla")
    assert xla > 50 * footprint.attention_activation_bytes(1, 8192, 16, 16, 128, implementation)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown cross-entropy implementation"):
        footprint.cross_entropy_peak_bytes(8, 8, 8, 8, "fused")
    with pytest.raises(ValueError, match="positive"):
        footprint.cross_entropy_peak_bytes(0, 8, 8, 8, "chunked")
    with pytest.raises(ValueError, match="must divide"):
        footprint.attention_activation_bytes(1, 8, 4, 3, 8, "xla")
    with pytest.raises(ValueError, match="unknown attention implementation"):
        footprint.attention_peak_bytes(1, 8, 4, 4, 8, "flash")
