"""Every attention implementation equals a naive per-head loop, with grouped-query heads and document masks."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels.attention import IMPLEMENTATIONS, attention, select_attention_implementation

# float32 against a float64 loop: the only differences are float32 rounding of
# dot products over K <= 64 and softmax sums over L <= 384 terms, ~1e-7 relative
# each; 1e-5 absolute on O(1) outputs leaves ample headroom without hiding a
# masking bug (a wrong mask moves outputs by O(0.1)).
F32_TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def naive_attention(q, k, v, segment_ids=None):
    """One (batch, head, query) at a time in float64 numpy: the definition, nothing clever."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    batch, length, n_heads, head_dim = q.shape
    group = n_heads // k.shape[2]
    seg = np.zeros((batch, length), int) if segment_ids is None else np.asarray(segment_ids)
    out = np.zeros_like(q)
    for b in range(batch):
        for h in range(n_heads):
            kv_head = h // group
            for i in range(length):
                keys = [j for j in range(i + 1) if seg[b, j] == seg[b, i]]
                scores = np.array([q[b, i, h] @ k[b, j, kv_head] for j in keys]) / np.sqrt(head_dim)
                probs = np.exp(scores - scores.max())
                probs /= probs.sum()
                out[b, i, h] = sum(p * v[b, j, kv_head] for p, j in zip(probs, keys))
    return out


def make_qkv(batch, length, n_heads, n_kv_heads, head_dim, *, dtype=jnp.float32, seed=0):
    # numpy's generator, not jax.random: no per-shape compilation in a test suite of many shapes.
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((batch, length, n_heads, head_dim), np.float32)
    k = rng.standard_normal((batch, length, n_kv_heads, head_dim), np.float32)
    v = rng.standard_normal((batch, length, n_kv_heads, head_dim), np.float32)
    return tuple(jnp.asarray(x, dtype) for x in (q, k, v))


def packed_segment_ids(batch, length, seed=0):
    """Sorted document ids per row, like a packed sequence: several documents of random lengths."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(np.sort(rng.integers(0, 4, (batch, length)), axis=1), jnp.int32)


@pytest.mark.parametrize(
    "n_heads, n_kv_heads, with_segments",
    [(4, 4, False), (4, 4, True), (4, 2, True), (6, 1, True)],  # MHA, MHA+docs, GQA, MQA
)
def test_xla_matches_naive_loop(n_heads, n_kv_heads, with_segments):
    q, k, v = make_qkv(2, 24, n_heads, n_kv_heads, 8)
    segment_ids = packed_segment_ids(2, 24) if with_segments else None
    out = attention(q, k, v, segment_ids, implementation="xla")
    assert out.shape == q.shape and out.dtype == q.dtype
    np.testing.assert_allclose(out, naive_attention(q, k, v, segment_ids), **F32_TOLERANCE)


def test_segments_really_isolate_documents():
    """Changing one document's keys and values must not move another document's outputs."""
    q, k, v = make_qkv(1, 16, 2, 1, 8)
    segment_ids = jnp.asarray([[0] * 6 + [1] * 10], jnp.int32)
    out = attention(q, k, v, segment_ids, implementation="xla")
    out_changed = attention(q, k.at[:, :6].set(7.0), v.at[:, :6].set(-3.0), segment_ids, implementation="xla")
    np.testing.assert_array_equal(out[:, 6:], out_changed[:, 6:])
    assert not np.allclose(out[:, :6], out_changed[:, :6])


def test_xla_gradients_match_jax_builtin_attention():
    """Gradients checked against jax.nn.dot_product_attention's own xla path, an independent implementation."""
    q, k, v = make_qkv(2, 32, 4, 2, 16)
    segment_ids = packed_segment_ids(2, 32)
    same_doc = (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None]

    def ours(q, k, v):
        return jnp.sum(jnp.sin(attention(q, k, v, segment_ids, implementation="xla")))

    def builtin(q, k, v):
        out = jax.nn.dot_product_attention(q, k, v, mask=same_doc, is_causal=True, implementation="xla")
        return jnp.sum(jnp.sin(out))

    got = jax.jit(jax.grad(ours, argnums=(0, 1, 2)))(q, k, v)
    want = jax.jit(jax.grad(builtin, argnums=(0, 1, 2)))(q, k, v)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, **F32_TOLERANCE)


def test_bfloat16_inputs_give_bfloat16_output_close_to_float32():
    q, k, v = make_qkv(1, 16, 4, 2, 16, dtype=jnp.bfloat16)
    out = attention(q, k, v, packed_segment_ids(1, 16), implementation="xla")
    assert out.dtype == jnp.bfloat16
    # bf16 keeps 8 mantissa bits (~4e-3 relative); outputs are O(1).
    np.testing.assert_allclose(out.astype(jnp.float32), naive_attention(q, k, v, packed_segment_ids(1, 16)), atol=3e-2)


def test_pallas_splash_in_interpret_mode_matches_xla():
    """The TPU kernel's own code, run by the Pallas interpreter on CPU: outputs and gradients.

    384 tokens make three 128-token blocks per axis, so block skipping above the
    diagonal and documents crossing block edges are both exercised; two query
    heads share one kv head (grouped-query).
    """
    from kernels.attention_splash import splash_attention

    length = 384
    q, k, v = make_qkv(1, length, 2, 1, 32)
    segment_ids = packed_segment_ids(1, length)

    def loss(impl):
        return lambda q, k, v: jnp.sum(jnp.sin(impl(q, k, v)))

    splash = lambda q, k, v: splash_attention(q, k, v, segment_ids, interpret=True)
    xla = lambda q, k, v: attention(q, k, v, segment_ids, implementation="xla")
    np.testing.assert_allclose(jax.jit(splash)(q, k, v), jax.jit(xla)(q, k, v), **F32_TOLERANCE)
    got = jax.jit(jax.grad(loss(splash), argnums=(0, 1, 2)))(q, k, v)
    want = jax.jit(jax.grad(loss(xla), argnums=(0, 1, 2)))(q, k, v)
    for g, w in zip(got, want):
        # Gradients sum L products of O(1) terms (dk, dv sum over the 2 query heads sharing a kv head too).
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_pallas_rejects_lengths_the_kernel_cannot_tile():
    from kernels.attention_splash import splash_attention

    q, k, v = make_qkv(1, 100, 2, 2, 8)
    with pytest.raises(ValueError, match="multiple of 128"):
        splash_attention(q, k, v, interpret=True)


def _platform() -> str:
    return jax.devices()[0].platform


@pytest.mark.accelerator
@pytest.mark.skipif(_platform() != "gpu", reason="cuDNN attention needs an NVIDIA GPU")
def test_cudnn_matches_xla_on_gpu():
    q, k, v = make_qkv(2, 256, 8, 2, 64, dtype=jnp.bfloat16)
    segment_ids = packed_segment_ids(2, 256)
    got = attention(q, k, v, segment_ids, implementation="cudnn")
    want = attention(q, k, v, segment_ids, implementation="xla")
    np.testing.assert_allclose(got.astype(jnp.float32), want.astype(jnp.float32), atol=3e-2)


@pytest.mark.accelerator
@pytest.mark.skipif(_platform() != "tpu", reason="the compiled Pallas TPU kernel needs a TPU")
def test_pallas_tpu_matches_xla_on_tpu():
    q, k, v = make_qkv(2, 512, 8, 2, 128, dtype=jnp.bfloat16)
    segment_ids = packed_segment_ids(2, 512)
    got = attention(q, k, v, segment_ids, implementation="pallas_tpu")
    want = attention(q, k, v, segment_ids, implementation="xla")
    np.testing.assert_allclose(got.astype(jnp.float32), want.astype(jnp.float32), atol=3e-2)


@pytest.mark.parametrize(
    "accelerator, expected",
    [
        ("cpu", "xla"),
        ("gpu-h100", "cudnn"),
        ("gpu-h200", "cudnn"),
        ("tpu-v4", "pallas_tpu"),
        ("tpu-v5e", "pallas_tpu"),
        ("tpu-v5p", "pallas_tpu"),
        ("tpu-v6e", "pallas_tpu"),
    ],
)
def test_select_implementation_per_accelerator(accelerator, expected):
    assert select_attention_implementation(accelerator) == expected
    assert expected in IMPLEMENTATIONS


def test_select_implementation_refuses_unknown_accelerators():
    with pytest.raises(ValueError, match="known: cpu"):
        select_attention_implementation("gpu-a100")


def test_rejects_bad_arguments():
    q, k, v = make_qkv(1, 8, 4, 3, 8)
    with pytest.raises(ValueError, match="must divide"):
        attention(q, k, v, implementation="xla")
    q, k, v = make_qkv(1, 8, 4, 2, 8)
    with pytest.raises(ValueError, match="unknown attention implementation"):
        attention(q, k, v, implementation="flash")
    with pytest.raises(ValueError, match="segment_ids shape"):
        attention(q, k, v, jnp.zeros((1, 7), jnp.int32), implementation="xla")


def test_importing_attention_loads_no_accelerator_module():
    """GPU/TPU kernels are imported only when called, so CPU runs never load Pallas."""
    code = (
        "import sys, kernels.attention\n"
        "loaded = [m for m in sys.modules if 'pallas' in m or m.endswith(('attention_splash', 'attention_cudnn'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
