"""The decoder-only transformer a resolved `ModelSpec` describes, in flax nnx.

Why nnx (not linen): nnx is flax's maintained API; its modules are plain Python
objects, and `nnx.split` turns one into a static graph definition plus a pure
dict of arrays. The runtime keeps only that pure dict (params, optimizer state
and checkpoints are ordinary pytrees with stable, sorted paths) and calls
`nnx.merge(graphdef, params)` inside the jit-compiled step, so the train step
stays a pure function of arrays, as in nanodo, while the model reads like the
architecture it is.

Architecture (the spec's contract): token embedding → n_layers blocks →
RMSNorm → output projection (tied: the embedding table itself). A block is
either *parallel* (PaLM/GPT-J: attention and MLP read the same RMSNormed input
and both add to the residual) or *sequential* (pre-norm Llama). Attention is
causal, grouped-query (n_kv_heads ≤ n_heads), with rotary embeddings on the
first `rotary_dim` dims of each head; the MLP is SwiGLU; no layer has a bias.

Every parameter carries an `axes` metadata tuple of *logical* axis names
(vocab, embed, heads, kv_heads, head_dim, mlp, norm), and the activations that
decide the layout are constrained by theirs (`runtime.spmd.constrain`:
activation_batch, activation_heads, activation_mlp, ...); `runtime.sharding`
maps those names to mesh axes, so this module knows nothing of meshes. The
residual stream is constrained after the embedding, every block and the final
norm, so the batch stays split over the data-parallel axes throughout.

Dtypes: parameters are stored in `dtypes.params` and cast to `dtypes.compute`
where they are used; softmax, RMSNorm statistics and the loss are float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from compiler.spec import DTypes, KernelsSpec, ModelSpec
from kernels import cross_entropy_reference
from runtime import spmd

AXES = "axes"  # metadata key of each Param's logical axis names
INIT = "init"  # metadata key of how a Param starts: "weight" (the spec's initializer) or "ones"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything the model needs, resolved: a `ModelSpec` whose dims are all filled, plus dtypes and kernels.

    Built by `model_config(...)`; a frozen dataclass (hashable) so jit can close over it.
    """

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    rotary_dim: int
    rope_theta: float
    norm_eps: float
    init_std: float
    initializer: str
    parallel_block: bool
    tied_embeddings: bool
    remat: str
    param_dtype: jnp.dtype
    compute_dtype: jnp.dtype
    attention_impl: str
    cross_entropy: str
    cross_entropy_chunk: int
    document_masking: bool


def model_config(
    model: ModelSpec,
    dtypes: DTypes,
    kernels: KernelsSpec,
    *,
    document_masking: bool = False,
    initializer: str = "truncated_normal",
) -> ModelConfig:
    """A `ModelConfig` from the resolved spec parts; a missing dim is a clear error, not a crash later."""
    missing = [name for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff",
                                 "rotary_dim") if getattr(model, name) is None]
    if missing:
        raise ValueError(f"model spec is not resolved (unset: {', '.join(missing)}); pass compiler.resolve.resolve_run(spec)")
    if model.n_heads % model.n_kv_heads:
        raise ValueError(f"n_heads={model.n_heads} is not a multiple of n_kv_heads={model.n_kv_heads}")
    if model.rotary_dim > model.head_dim or model.rotary_dim % 2:
        raise ValueError(f"rotary_dim={model.rotary_dim} must be even and at most head_dim={model.head_dim}")
    return ModelConfig(
        vocab_size=model.vocab_size, d_model=model.d_model, n_layers=model.n_layers, n_heads=model.n_heads,
        n_kv_heads=model.n_kv_heads, head_dim=model.head_dim, d_ff=model.d_ff, rotary_dim=model.rotary_dim,
        rope_theta=model.rope_theta, norm_eps=model.norm_eps, init_std=model.init_std, initializer=initializer,
        parallel_block=model.block == "parallel", tied_embeddings=model.tied_embeddings, remat=model.remat,
        param_dtype=jnp.dtype(dtypes.params), compute_dtype=jnp.dtype(dtypes.compute),
        attention_impl=kernels.attention, cross_entropy=kernels.cross_entropy,
        cross_entropy_chunk=kernels.cross_entropy_chunk, document_masking=document_masking,
    )


def weight_initializer(initializer: str, std: float) -> Callable:
    """The spec's weight initializer (init.initializer, model.init_std) as a jax initializer (key, shape, dtype)."""
    if initializer == "normal":
        return jax.nn.initializers.normal(std)
    return jax.nn.initializers.truncated_normal(std)


def _weight(param: nnx.Param, dtype) -> jax.Array:
    """A parameter's value in `dtype`, held to its parameter's layout (runtime.spmd.constrain, by its logical axes).

    Why constrain the cast copy: its cotangent then has the same layout, so
    the partitioner reduce-scatters each weight gradient onto its fsdp shards
    in the compute dtype (and all-gathers the weight in the compute dtype),
    the FSDP pattern, instead of all-reducing the whole gradient.
    """
    return spmd.constrain(param[...].astype(dtype), param.get_metadata()[AXES])


def _param(config: ModelConfig, rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str, ...]) -> nnx.Param:
    """A weight drawn from the spec's initializer, tagged with its logical axes."""
    value = weight_initializer(config.initializer, config.init_std)(rngs.params(), shape, config.param_dtype)
    return nnx.Param(value, **{AXES: axes, INIT: "weight"})


class RMSNorm(nnx.Module):
    """x / rms(x) * scale, statistics in float32 (no mean subtraction, no bias)."""

    def __init__(self, config: ModelConfig):
        self.eps = config.norm_eps
        self.compute_dtype = config.compute_dtype
        self.scale = nnx.Param(jnp.ones((config.d_model,), config.param_dtype), **{AXES: ("norm",), INIT: "ones"})

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        x32_BxLxD = x_BxLxD.astype(jnp.float32)
        inv_rms_BxLx1 = jax.lax.rsqrt(jnp.mean(jnp.square(x32_BxLxD), axis=-1, keepdims=True) + self.eps)
        return (x32_BxLxD * inv_rms_BxLx1 * self.scale[...].astype(jnp.float32)).astype(self.compute_dtype)


def rotary(x_BxLxHxK: jax.Array, positions_BxL: jax.Array, rotary_dim: int, theta: float) -> jax.Array:
    """Rotary position embedding of the first `rotary_dim` dims of each head (GPT-NeoX half rotation).

    Dims past `rotary_dim` pass through unrotated (phi-1 rotates 32 of 64).
    Angles are computed in float32 from integer positions, so packed documents
    whose positions restart at 0 get exactly the angles of a lone document.
    """
    half = rotary_dim // 2
    inv_freq_R = 1.0 / (theta ** (jnp.arange(half, dtype=jnp.float32) * 2.0 / rotary_dim))
    angles_BxLxR = positions_BxL.astype(jnp.float32)[..., None] * inv_freq_R
    sin_BxLx1xR = jnp.sin(angles_BxLxR)[:, :, None, :]
    cos_BxLx1xR = jnp.cos(angles_BxLxR)[:, :, None, :]
    x32 = x_BxLxHxK.astype(jnp.float32)
    x1, x2, rest = x32[..., :half], x32[..., half:rotary_dim], x32[..., rotary_dim:]
    rotated = jnp.concatenate([x1 * cos_BxLx1xR - x2 * sin_BxLx1xR, x2 * cos_BxLx1xR + x1 * sin_BxLx1xR, rest], axis=-1)
    return rotated.astype(x_BxLxHxK.dtype)


class Attention(nnx.Module):
    """Causal grouped-query self-attention with rotary embeddings; q/k/v/o projections without bias."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.config = config
        D, H, G, K = config.d_model, config.n_heads, config.n_kv_heads, config.head_dim
        self.q_DxHxK = _param(config, rngs, (D, H, K), ("embed", "heads", "head_dim"))
        self.k_DxGxK = _param(config, rngs, (D, G, K), ("embed", "kv_heads", "head_dim"))
        self.v_DxGxK = _param(config, rngs, (D, G, K), ("embed", "kv_heads", "head_dim"))
        self.o_HxKxD = _param(config, rngs, (H, K, D), ("heads", "head_dim", "embed"))

    def __call__(self, x_BxLxD: jax.Array, positions_BxL: jax.Array, segment_ids_BxL: jax.Array | None) -> jax.Array:
        c = self.config
        dtype = c.compute_dtype
        q_BxLxHxK = jnp.einsum("bld,dhk->blhk", x_BxLxD, _weight(self.q_DxHxK, dtype))
        k_BxLxGxK = jnp.einsum("bld,dgk->blgk", x_BxLxD, _weight(self.k_DxGxK, dtype))
        v_BxLxGxK = jnp.einsum("bld,dgk->blgk", x_BxLxD, _weight(self.v_DxGxK, dtype))
        q_BxLxHxK = spmd.constrain(rotary(q_BxLxHxK, positions_BxL, c.rotary_dim, c.rope_theta), _Q_AXES)
        k_BxLxGxK = spmd.constrain(rotary(k_BxLxGxK, positions_BxL, c.rotary_dim, c.rope_theta), _KV_AXES)
        v_BxLxGxK = spmd.constrain(v_BxLxGxK, _KV_AXES)
        out_BxLxHxK = spmd.attention(
            q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, segment_ids_BxL, implementation=c.attention_impl,
        )
        return jnp.einsum("blhk,hkd->bld", out_BxLxHxK.astype(dtype), _weight(self.o_HxKxD, dtype))


_RESIDUAL_AXES = ("activation_batch", "activation_length", "activation_embed")
_Q_AXES = ("activation_batch", "activation_length", "activation_heads", "activation_head_dim")
_KV_AXES = ("activation_batch", "activation_length", "activation_kv_heads", "activation_head_dim")
_MLP_AXES = ("activation_batch", "activation_length", "activation_mlp")


class SwiGLU(nnx.Module):
    """down(silu(gate(x)) * up(x)), no biases."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.compute_dtype = config.compute_dtype
        D, F = config.d_model, config.d_ff
        self.gate_DxF = _param(config, rngs, (D, F), ("embed", "mlp"))
        self.up_DxF = _param(config, rngs, (D, F), ("embed", "mlp"))
        self.down_FxD = _param(config, rngs, (F, D), ("mlp", "embed"))

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        dtype = self.compute_dtype
        gate_BxLxF = jnp.einsum("bld,df->blf", x_BxLxD, _weight(self.gate_DxF, dtype))
        up_BxLxF = jnp.einsum("bld,df->blf", x_BxLxD, _weight(self.up_DxF, dtype))
        hidden_BxLxF = spmd.constrain(jax.nn.silu(gate_BxLxF) * up_BxLxF, _MLP_AXES)
        return jnp.einsum("blf,fd->bld", hidden_BxLxF, _weight(self.down_FxD, dtype))


class Block(nnx.Module):
    """One transformer block, parallel (one norm, attn + MLP summed) or sequential (pre-norm, one after the other)."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.parallel = config.parallel_block
        self.attention_norm = RMSNorm(config)
        self.attention = Attention(config, rngs)
        self.mlp = SwiGLU(config, rngs)
        if not self.parallel:
            self.mlp_norm = RMSNorm(config)

    def __call__(self, x_BxLxD: jax.Array, positions_BxL: jax.Array, segment_ids_BxL: jax.Array | None) -> jax.Array:
        if self.parallel:
            h_BxLxD = self.attention_norm(x_BxLxD)
            return x_BxLxD + self.attention(h_BxLxD, positions_BxL, segment_ids_BxL) + self.mlp(h_BxLxD)
        x_BxLxD = x_BxLxD + self.attention(self.attention_norm(x_BxLxD), positions_BxL, segment_ids_BxL)
        return x_BxLxD + self.mlp(self.mlp_norm(x_BxLxD))


_REMAT_POLICIES = {
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # keep weight matmul outputs, recompute the rest
    "full": jax.checkpoint_policies.nothing_saveable,  # keep only block inputs
}


class Transformer(nnx.Module):
    """Embedding → blocks → RMSNorm; `hidden` gives the final normed states, `loss` the mean token loss."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.config = config
        V, D = config.vocab_size, config.d_model
        self.embed_VxD = _param(config, rngs, (V, D), ("vocab", "embed"))
        self.blocks = nnx.List([Block(config, rngs) for _ in range(config.n_layers)])
        self.final_norm = RMSNorm(config)
        if not config.tied_embeddings:
            self.unembed_DxV = _param(config, rngs, (D, V), ("embed", "vocab"))

    def hidden(self, inputs_BxL: jax.Array, positions_BxL: jax.Array, segment_ids_BxL: jax.Array | None,
               table: spmd.GatheredTable | None = None) -> jax.Array:
        """Final RMSNormed hidden states [B, L, D] in the compute dtype (`table`: the tied table, gathered once)."""
        c = self.config
        x_BxLxD = spmd.embed(self.embed_VxD[...] if table is None else table, inputs_BxL,
                             self.embed_VxD.get_metadata()[AXES], c.compute_dtype)
        x_BxLxD = spmd.constrain(x_BxLxD, _RESIDUAL_AXES)
        for block in self.blocks:
            if c.remat == "none":
                x_BxLxD = block(x_BxLxD, positions_BxL, segment_ids_BxL)
            else:
                apply = nnx.remat(lambda blk, x, p, s: blk(x, p, s), policy=_REMAT_POLICIES[c.remat])
                x_BxLxD = apply(block, x_BxLxD, positions_BxL, segment_ids_BxL)
            x_BxLxD = spmd.constrain(x_BxLxD, _RESIDUAL_AXES)
        return spmd.constrain(self.final_norm(x_BxLxD), _RESIDUAL_AXES)

    def output_weight(self) -> tuple[jax.Array, str]:
        """The output projection and its layout ("VxD" tied table or "DxV" untied matrix), in the compute dtype."""
        dtype = self.config.compute_dtype
        if self.config.tied_embeddings:
            return _weight(self.embed_VxD, dtype), "VxD"
        return _weight(self.unembed_DxV, dtype), "DxV"

    def output_weight_axes(self) -> tuple[str, str]:
        """The logical axes of `output_weight`, as the parameter is tagged (so the loss knows its layout)."""
        return ("vocab", "embed") if self.config.tied_embeddings else ("embed", "vocab")

    def logits(self, inputs_BxL: jax.Array, positions_BxL: jax.Array | None = None,
               segment_ids_BxL: jax.Array | None = None) -> jax.Array:
        """Full [B, L, V] float32 logits (for evaluation and tests; training uses `loss`, which never forms them)."""
        positions_BxL = _default_positions(inputs_BxL) if positions_BxL is None else positions_BxL
        hidden_BxLxD = self.hidden(inputs_BxL, positions_BxL, segment_ids_BxL)
        weight, layout = self.output_weight()
        equation = "bld,vd->blv" if layout == "VxD" else "bld,dv->blv"
        return jnp.einsum(equation, hidden_BxLxD, weight, preferred_element_type=jnp.float32)

    def loss(self, batch: dict[str, jax.Array], reduction: str = "mean") -> jax.Array:
        """Next-token cross-entropy over tokens whose loss_mask is set (float32 scalar).

        reduction "mean" divides by the number of counted tokens; "sum" does
        not (for callers that add up shards of a batch and divide once).
        With `document_masking`, attention stays inside each packed document and
        positions restart per document (from the batch); without it the packed
        sequence is one causal stream with positions 0..L-1.
        """
        c = self.config
        inputs_BxL = batch["inputs"]
        if c.document_masking:
            positions_BxL, segment_ids_BxL = batch["positions"], batch["segment_ids"]
        else:
            positions_BxL, segment_ids_BxL = _default_positions(inputs_BxL), None
        # A tied table on a mesh is gathered once for the lookup and the loss: one gradient reduction, not two.
        table = (spmd.gather_table(self.embed_VxD[...], self.embed_VxD.get_metadata()[AXES], c.compute_dtype)
                 if c.tied_embeddings and c.cross_entropy == "chunked" else None)
        hidden_BxLxD = self.hidden(inputs_BxL, positions_BxL, segment_ids_BxL, table)
        weight, layout = self.output_weight() if table is None else (table, "VxD")
        if c.cross_entropy == "chunked":
            return spmd.chunked_loss(
                hidden_BxLxD, weight, layout, self.output_weight_axes(), batch["targets"], batch["loss_mask"],
                chunk_size=c.cross_entropy_chunk, reduction=reduction,
            )
        return cross_entropy_reference.reference_cross_entropy(
            hidden_BxLxD, weight, batch["targets"], batch["loss_mask"], weight_layout=layout, reduction=reduction,
        )


def _default_positions(inputs_BxL: jax.Array) -> jax.Array:
    return jnp.broadcast_to(jnp.arange(inputs_BxL.shape[1], dtype=jnp.int32), inputs_BxL.shape)
