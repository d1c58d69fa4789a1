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
  gather       fsdp > 1 only: 2 · (one block's parameters) · a / tensor
  activations  [(L·s(remat) + 2D·a)·t + L·A(remat)] / tensor: what autodiff keeps from
               the forward pass for the backward one, every block's remat set and the
               final norm's input and output.
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
               they are batched matmuls, which the policy does not save).
               (The enumeration follows Korthikanti et al. 2022, "Reducing
               Activation Recomputation in Large Transformer Models", §4,
               adapted to this block: no dropout, SwiGLU, GQA.)
  loss         the output layer at the turn from forward to backward:
               [V·D·a + kernels.footprint.cross_entropy_peak_bytes(t, V, D, chunk, ...)] / tensor.
               V·D·a is the output weight as the loss reads it, gathered over fsdp
               (or cast to the compute dtype) into one whole copy per chip.
               "chunked" holds its [chunk, V] float32 block(s), the [V, D] float32
               weight-gradient accumulator and the [t, D] float32 hidden gradient;
               "reference" the whole [t, V] logits and their gradient. On TPU the
               footprint's `fused` form: XLA writes one [chunk, V] block to memory.
  backward     the block being differentiated, recomputed under dots/full: its
               whole `none` set instead of its remat set, and the attention call's
               peak (kernels.footprint.attention_peak_bytes) instead of what it
               kept, [(s(none) − s(remat))·t + Apeak − A(remat)] / tensor; with a
               tied table, plus the table's gradient from the loss, V·D·a / tensor,
               waiting for the lookup's.
The peak is params + grads + optimizer + gather + activations + the larger of
loss and backward: the weight state lives throughout, the activations peak at
the turn, and the output layer's buffers are freed before the first block's
backward pass begins (XLA's schedule of the compiled step, on v5e).
kernels.footprint is pure Python (it imports nothing from jax), which keeps
this module, like the whole compiler, free of jax.

Agreement with XLA (`benchmarks/bench_aot.py --size S --smaller-slices`,
libtpu 0.0.42.1, the to_code runs at 2 sequences per chip), estimate / XLA's
peak per chip: 470M 0.95 on v5e:16x16, 0.89 on 8x16, 0.95 on 8x8; 2.8B 0.84
on 16x16, 0.85 on 8x16, 1.06 on 8x8. XLA's peak is elastic, which bounds how
close any closed form can come: given a whole chip, libtpu schedules for
speed and keeps what it need not (the all-gathered weights of several blocks
at once, the f32 [V, D] accumulator allocated before the forward pass ends),
so the same step moves by ±10% between slices whose per-chip work is the
same. On v5e:4x4 the 2.8B step takes 15.2 GB against 10.7 estimated (0.70),
yet libtpu compiles it when told the chip has 12.8 GB (1.2 × the estimate),
with a peak of 11.4 GB (estimate / that peak 0.94); 470M there takes 12.0 GB
against 9.45 (0.79), and 10.1 GB held to 11.3 (0.94). The bench checks such
a case that way. A new
size or slice is worth `runix compile --aot` before it queues.
"""

from __future__ import annotations

import dataclasses

from compiler.flops import parameter_count
from compiler.hardware import default_attention, is_tpu
from compiler.spec import BlockKind, RunSpec
from kernels import footprint

DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes per chip, by term (see the module docstring), and the chip's capacity."""

    params: int
    grads: int
    optimizer: int
    gather: int
    activations: int
    loss: int
    backward: int
    capacity: int

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.gather + self.activations + max(self.loss, self.backward)

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity

    @property
    def fraction(self) -> float:
        return self.total / self.capacity

    def terms(self) -> dict[str, int]:
        return {name: getattr(self, name)
                for name in ("params", "grads", "optimizer", "gather", "activations", "loss", "backward")}

    def describe(self, format_bytes) -> str:
        """The sum as a user reads it: "params 1 GB + ... + the larger of loss 3 GB and backward 2 GB"."""
        summed = " + ".join(f"{name} {format_bytes(getattr(self, name))}"
                            for name in ("params", "grads", "optimizer", "gather", "activations") if getattr(self, name))
        larger = f"the larger of loss {format_bytes(self.loss)} and backward {format_bytes(self.backward)}"
        return f"{summed} + {larger}" if summed else larger


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


def output_weight_bytes(spec: RunSpec) -> int:
    """V·D·a: the output weight (or a tied table's gradient) whole, in the compute dtype."""
    return spec.model.vocab_size * spec.model.d_model * DTYPE_BYTES[spec.dtypes.compute]


def output_weight_copy_bytes(spec: RunSpec) -> int:
    """The output weight as the loss reads it: one whole copy per chip when gathered over fsdp or cast."""
    if spec.mesh.axes.fsdp == 1 and spec.dtypes.params == spec.dtypes.compute:
        return 0
    return output_weight_bytes(spec)


def activation_bytes(spec: RunSpec) -> int:
    """What autodiff keeps from the forward pass: every block's remat set, and the final norm's input and output."""
    m = spec.model
    policy = value(m.remat)
    per_token = m.n_layers * saved_per_token(spec, policy) + 2 * m.d_model * DTYPE_BYTES[spec.dtypes.compute]
    kept, _ = attention_bytes(spec, policy)
    return _ceil_div(per_token * tokens_per_chip(spec) + m.n_layers * kept, spec.mesh.axes.tensor)


def backward_bytes(spec: RunSpec) -> int:
    """The block being differentiated: its whole `none` set and attention peak in place of what it kept."""
    m = spec.model
    policy = value(m.remat)
    kept, peak = attention_bytes(spec, policy)
    recomputed = (saved_per_token(spec, "none") - saved_per_token(spec, policy)) * tokens_per_chip(spec) + peak - kept
    table_gradient = output_weight_bytes(spec) if m.tied_embeddings else 0
    return _ceil_div(recomputed + table_gradient, spec.mesh.axes.tensor)


def loss_bytes(spec: RunSpec) -> int:
    """The output layer at the turn: the gathered output weight and the cross-entropy kernel's buffers."""
    m = spec.model
    peak = footprint.cross_entropy_peak_bytes(
        tokens_per_chip(spec), m.vocab_size, m.d_model, spec.kernels.cross_entropy_chunk, spec.kernels.cross_entropy,
        dtype_bytes=DTYPE_BYTES[spec.dtypes.compute], fused=is_tpu(spec.mesh.accelerator),
    )
    return _ceil_div(output_weight_copy_bytes(spec) + peak, spec.mesh.axes.tensor)


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
        gather=gather,
        activations=activation_bytes(spec),
        loss=loss_bytes(spec),
        backward=backward_bytes(spec),
        capacity=capacity,
    )
