"""The transformer: shapes, causality, document masking, rotary, loss kernels, remat and variants."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from compiler.spec import DTypes, KernelsSpec
from runtime import model as model_lib
from tests.runtime.runs import tiny_spec


def make_model(document_masking=True, dtypes=None, kernels=None, **model_overrides):
    spec = tiny_spec(model=model_overrides)
    config = model_lib.model_config(spec.model, dtypes or DTypes(), kernels or KernelsSpec(attention="xla"),
                                    document_masking=document_masking)
    return model_lib.Transformer(config, nnx.Rngs(params=0)), config


def call(model, method, *args):
    """model.method(*args) under jit: eager nnx dispatches op by op, which is what makes model tests slow."""
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, *a: getattr(nnx.merge(graphdef, s), method)(*a))(state, *args)


def batch_of(inputs, segment_ids=None):
    inputs = jnp.asarray(inputs, jnp.int32)
    B, L = inputs.shape
    if segment_ids is None:
        segment_ids = np.ones((B, L), np.int32)
    segment_ids = np.asarray(segment_ids)
    positions = np.zeros((B, L), np.int32)
    for b in range(B):
        for t in range(1, L):
            positions[b, t] = positions[b, t - 1] + 1 if segment_ids[b, t] == segment_ids[b, t - 1] else 0
    return {"inputs": inputs, "targets": jnp.roll(inputs, -1, axis=1), "loss_mask": jnp.ones((B, L), jnp.float32),
            "segment_ids": jnp.asarray(segment_ids), "positions": jnp.asarray(positions)}


def test_parameter_shapes_and_logical_axes():
    model, config = make_model()
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    attention = params["blocks"][0]["attention"]
    assert attention["q_DxHxK"].shape == (32, 4, 8)
    assert attention["k_DxGxK"].shape == (32, 2, 8)  # grouped-query: 2 kv heads
    assert params["blocks"][0]["mlp"]["gate_DxF"].shape == (32, 64)
    assert "unembed_DxV" not in params and "mlp_norm" not in params["blocks"][0]  # tied, parallel block
    assert model.blocks[0].attention.k_DxGxK.get_metadata()[model_lib.AXES] == ("embed", "kv_heads", "head_dim")


def test_variants_have_their_parameters():
    untied, _ = make_model(tied_embeddings=False, block="sequential")
    params = nnx.to_pure_dict(nnx.state(untied, nnx.Param))
    assert params["unembed_DxV"].shape == (32, 512) and "mlp_norm" in params["blocks"][0]


def test_causal():
    model, _ = make_model(document_masking=False)
    tokens = np.random.default_rng(0).integers(0, 512, size=(1, 16))
    changed = tokens.copy()
    changed[0, 10] = (changed[0, 10] + 1) % 512
    a, b = call(model, "logits", jnp.asarray(tokens)), call(model, "logits", jnp.asarray(changed))
    np.testing.assert_array_equal(np.asarray(a[0, :10]), np.asarray(b[0, :10]))
    assert not np.allclose(np.asarray(a[0, 10:]), np.asarray(b[0, 10:]))


def test_document_masking_isolates_documents():
    """The second document of a packed row gets the logits it would get alone (positions restart, no cross-attention)."""
    model, _ = make_model()
    rng = np.random.default_rng(1)
    first, second = rng.integers(0, 512, size=7), rng.integers(0, 512, size=9)
    packed = batch_of(np.concatenate([first, second])[None], segment_ids=[[1] * 7 + [2] * 9])
    alone = batch_of(second[None])
    packed_logits = call(model, "logits", packed["inputs"], packed["positions"], packed["segment_ids"])
    alone_logits = call(model, "logits", alone["inputs"], alone["positions"], alone["segment_ids"])
    np.testing.assert_allclose(np.asarray(packed_logits[0, 7:]), np.asarray(alone_logits[0]), rtol=2e-5, atol=2e-5)


def test_rotary_rotates_only_rotary_dims_and_keeps_relative_positions():
    rng = np.random.default_rng(2)
    q = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)

    def rot(x, position):
        return model_lib.rotary(x, jnp.full((1, 1), position, jnp.int32), rotary_dim=8, theta=10000.0)

    np.testing.assert_array_equal(np.asarray(rot(q, 5)[..., 8:]), np.asarray(q[..., 8:]))
    np.testing.assert_allclose(float(jnp.linalg.norm(rot(q, 5))), float(jnp.linalg.norm(q)), rtol=1e-6)
    dot = lambda m, n: float(jnp.sum(rot(q, m) * rot(k, n)))  # noqa: E731
    np.testing.assert_allclose(dot(7, 3), dot(14, 10), rtol=1e-5)


def test_chunked_loss_matches_reference_loss():
    batch = batch_of(np.random.default_rng(3).integers(0, 512, size=(2, 16)), segment_ids=[[1] * 8 + [2] * 8] * 2)
    losses = {}
    for kind in ("chunked", "reference"):
        model, _ = make_model(kernels=KernelsSpec(attention="xla", cross_entropy=kind, cross_entropy_chunk=5))
        losses[kind] = float(call(model, "loss", batch))
    np.testing.assert_allclose(losses["chunked"], losses["reference"], rtol=1e-6)
    np.testing.assert_allclose(losses["reference"], np.log(512), rtol=0.05)  # near uniform at init


@pytest.mark.parametrize("remat", ["dots", "full"])
def test_remat_keeps_loss_and_gradients(remat):
    batch = batch_of(np.random.default_rng(4).integers(0, 512, size=(2, 16)))

    def loss_and_grads(policy):
        model, _ = make_model(remat=policy)
        graphdef, params = nnx.split(model, nnx.Param)
        return jax.jit(jax.value_and_grad(lambda p: nnx.merge(graphdef, p).loss(batch)))(nnx.to_pure_dict(params))

    (loss_a, grads_a), (loss_b, grads_b) = loss_and_grads("none"), loss_and_grads(remat)
    np.testing.assert_allclose(float(loss_a), float(loss_b), rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6),
                 grads_a, grads_b)


def test_bfloat16_compute_and_params():
    model, _ = make_model(dtypes=DTypes(params="bfloat16", compute="bfloat16"))
    batch = batch_of(np.random.default_rng(5).integers(0, 512, size=(1, 8)))
    assert model.embed_VxD[...].dtype == jnp.bfloat16
    assert call(model, "hidden", batch["inputs"], batch["positions"], None).dtype == jnp.bfloat16
    loss = call(model, "loss", batch)
    assert loss.dtype == jnp.float32 and np.isfinite(float(loss))


def test_unresolved_model_is_a_clear_error():
    from compiler.spec import ModelSpec

    with pytest.raises(ValueError, match="not resolved"):
        model_lib.model_config(ModelSpec(preset="tiny"), DTypes(), KernelsSpec())
