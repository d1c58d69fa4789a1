"""Peak training memory per chip of a resolved run, in closed form.

Why: a run that cannot fit on its chips should fail in `runix compile`, on a
laptop, not an hour into a TPU queue. The estimate is deliberately simple and
written out, so a user can check it; it is an estimate of what XLA will need,
not a promise (XLA's buffer assignment, fusion and prefetching move it by
some percent either way).

Sharding assumptions (the runtime's mesh axes `data`, `fsdp`, `tensor`):
  * parameters, gradients and AdamW state are split fsdp × tensor ways
    (replicated over `data`);
  * activations and the loss's logits are split over the batch by data × fsdp
    (each chip holds sequences / (data·fsdp) sequences) and over features by
    `tensor` — heads and MLP width, and, as MaxText's logical axis rules shard
    `activation_embed` over the tensor axis, the residual stream too;
  * with fsdp > 1, one block's weights are all-gathered at a time (and their
    gradient reduce-scattered), so one unsharded block in the compute dtype and
    its gradient are live at once.

Terms, in bytes (p = bytes of dtypes.params, a = bytes of dtypes.compute, P
parameters, b = sequences per chip = sequences/(data·fsdp), t = tokens per
chip = b·S, names as in compiler.flops):
  params       P·p / (fsdp·tensor)
  grads        P·p / (fsdp·tensor)        gradients in the parameter dtype
  optimizer    2·P·p / (fsdp·tensor)      AdamW first and second moments (optax keeps
                                          them in the parameter dtype)
  activations  [(L·s(remat) + s(none) − s(remat) + 2D·a)·t + L·A(remat) + Apeak − A(remat)] / tensor
               s(policy) = bytes autodiff keeps per token of one block outside the
               attention kernel (elements × a):
                 none: everything the backward pass reads: block input and norm
                       output(s) (2D parallel, 4D sequential), q/k/v (H+2K)h,
                       rotated q/k (H+K)h, attention output Hh, SwiGLU gate, up,
                       silu(gate) and product 4F;
                 dots: the block input D and the outputs of the weight
                       matmuls only (jax's dots_with_no_batch_dims_saveable):
                       q/k/v (H+2K)h, Wo and down outputs 2D, gate and up 2F.
                       Attention's own matmuls (scores, probabilities × v) have
                       batch dims (batch, kv head), so they are recomputed, not
                       kept, whatever the kernel;
                 full: the block input D only.
               A(policy) = what one attention call keeps from forward to backward,
               kernels.footprint.attention_activation_bytes (xla keeps the [S, S]
               scores and probabilities; cudnn and pallas_tpu a log-sum-exp per
               row): kept by every block under none; 0 under dots and full (an
               earlier version kept xla's scores under dots, ~20× too much:
               they are batched matmuls, which the policy does not save). Apeak =
               kernels.footprint.attention_peak_bytes, the call being
               differentiated. Under dots/full that block is recomputed, so it
               holds its whole `none` set instead of its remat set; 2D·a is the
               final norm's input and output. (The enumeration follows
               Korthikanti et al. 2022, "Reducing Activation Recomputation in
               Large Transformer Models", §4, adapted to this block: no dropout,
               SwiGLU, GQA.)
  loss         kernels.footprint.cross_entropy_peak_bytes(t, V, D, chunk, kernels.cross_entropy) / tensor:
               "reference" holds three [t, V] float32 arrays (logits, log-probs,
               their gradient); "chunked" two [chunk, V] float32 blocks, the
               [V, D] float32 weight-gradient accumulator and the [t, D] float32
               hidden gradient. The kernels' tests check these formulas against
               XLA's buffer assignment, so the price follows the kernels.
  gather       fsdp > 1 only: 2 · (one block's parameters) · a / tensor
The peak is the sum: the weight state lives throughout, and the activations
and the loss's buffers peak together at the turn from forward to backward.
kernels.footprint is pure Python (it imports nothing from jax), which keeps
this module, like the whole compiler, free of jax.

Agreement with XLA (`benchmarks/bench_aot.py --size S --smaller-slices`, libtpu
0.0.42.1, the to_code runs at 2 sequences per chip), estimate / XLA peak:
470M 1.10 on v5e:16x16, 8x16 and 8x8; 2.8B 0.95 on 16x16, 1.01 on 8x16,
1.32 on 8x8 and 0.84 on 4x4 (XLA 15.2 GB against 12.8 estimated: the low side,
on a step that nearly fills the chip). The 8x8 outlier is XLA's layout choice, not a term missing here:
on 16x16 and 8x16 the gathered bf16[256000, 2560] table is transposed for the
loss into two extra 1.3 GB copies, on 8x8 it is gathered straight into the
layout the loss reads. The estimate counts neither copy, yet lands near 1.0 on
the slices that make them: errors elsewhere offset them (not broken down here),
so a new size or slice is worth `runix compile --aot` before it queues.
"""

from __future__ import annotations

import dataclasses

from compiler.flops import parameter_count
from compiler.hardware import default_attention
from compiler.spec import BlockKind, RunSpec
from kernels import footprint

DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes per chip, by term (see the module docstring), and the chip's capacity."""

    params: int
    grads: int
    optimizer: int
    activations: int
    loss: int
    gather: int
    capacity: int

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations + self.loss + self.gather

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity

    @property
    def fraction(self) -> float:
        return self.total / self.capacity

    def terms(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in ("params", "grads", "optimizer", "activations", "loss", "gather")}


def value(field):
    """A spec field as plain data: pydantic leaves unvalidated defaults as enum members."""
    return getattr(field, "value", field)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def saved_per_token(spec: RunSpec, policy: str) -> int:
    """s(policy): bytes one block keeps per token outside the attention kernel (unsharded)."""
    m = spec.model
    a = DTYPE_BYTES[spec.dtypes.compute]
    d, h, f = m.d_model, m.head_dim, m.d_ff
    qkv = (m.n_heads + 2 * m.n_kv_heads) * h
    attn_out = m.n_heads * h
    if policy == "full":
        return d * a
    if policy == "dots":
        return (d + qkv + 2 * d + 2 * f) * a
    norms = 2 * d if m.block == BlockKind.parallel.value else 4 * d
    rotated = (m.n_heads + m.n_kv_heads) * h
    return (norms + qkv + rotated + attn_out + 4 * f) * a


def sequences_per_chip(spec: RunSpec) -> int:
    axes = spec.mesh.axes
    return spec.batch.sequences // (axes.data * axes.fsdp)


def tokens_per_chip(spec: RunSpec) -> int:
    return sequences_per_chip(spec) * spec.batch.sequence_length


def attention_implementation(spec: RunSpec) -> str:
    attention = spec.kernels.attention
    return default_attention(spec.mesh.accelerator) if attention == "auto" else attention


def attention_bytes(spec: RunSpec, policy: str) -> tuple[int, int]:
    """(A(policy), Apeak): what one attention call keeps for the backward pass, and its peak while differentiated."""
    m = spec.model
    implementation = attention_implementation(spec)
    args = (sequences_per_chip(spec), spec.batch.sequence_length, m.n_heads, m.n_kv_heads, m.head_dim, implementation)
    a = DTYPE_BYTES[spec.dtypes.compute]
    masks = spec.data.document_masking
    peak = footprint.attention_peak_bytes(*args, dtype_bytes=a, segment_ids=masks)
    if policy == "none":
        return footprint.attention_activation_bytes(*args, dtype_bytes=a, segment_ids=masks), peak
    return 0, peak


def activation_bytes(spec: RunSpec) -> int:
    m = spec.model
    policy = value(m.remat)
    per_token = (
        m.n_layers * saved_per_token(spec, policy)
        + saved_per_token(spec, "none") - saved_per_token(spec, policy)
        + 2 * m.d_model * DTYPE_BYTES[spec.dtypes.compute]
    )
    kept, peak = attention_bytes(spec, policy)
    total = per_token * tokens_per_chip(spec) + m.n_layers * kept + peak - kept
    return _ceil_div(total, spec.mesh.axes.tensor)


def loss_bytes(spec: RunSpec) -> int:
    m = spec.model
    peak = footprint.cross_entropy_peak_bytes(
        tokens_per_chip(spec), m.vocab_size, m.d_model, spec.kernels.cross_entropy_chunk, spec.kernels.cross_entropy,
        dtype_bytes=DTYPE_BYTES[spec.dtypes.compute],
    )
    return _ceil_div(peak, spec.mesh.axes.tensor)


def memory_per_chip(spec: RunSpec, capacity: int) -> MemoryEstimate:
    """Peak memory per chip of a resolved run against `capacity` bytes (compiler.hardware)."""
    axes = spec.mesh.axes
    p = DTYPE_BYTES[spec.dtypes.params]
    a = DTYPE_BYTES[spec.dtypes.compute]
    params = parameter_count(spec.model)
    weight_shard = _ceil_div(params.total, axes.fsdp * axes.tensor) * p
    gather = 0
    if axes.fsdp > 1:
        gather = 2 * _ceil_div(params.per_layer(spec.model.n_layers) * a, axes.tensor)
    return MemoryEstimate(
        params=weight_shard,
        grads=weight_shard,
        optimizer=2 * weight_shard,
        activations=activation_bytes(spec),
        loss=loss_bytes(spec),
        gather=gather,
        capacity=capacity,
    )
