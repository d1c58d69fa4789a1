"""Where the model meets the mesh: activation constraints and per-device kernels, by logical axis names.

Why a module of its own: the model (runtime.model) says what the dims of its
activations mean and never names a mesh. The train step compiles under the
mesh it runs on as jax's ambient mesh (`jax.set_mesh`, runtime.train_step),
and these functions read it back. Three cases:

  * no ambient mesh (evaluation, tests calling the model directly): identity;
  * every mesh axis manual: inside `shard_map`, where arrays are already one
    device's (the CPU fixed-order step runs the whole model per device): identity;
  * an automatic mesh (the "xla" reduction, the TPU/GPU path): activations
    are constrained by `runtime.sharding.RULES` (the batch over (data, fsdp)
    from the embedding on, heads and MLP width over tensor), and what XLA
    cannot or should not partition by itself runs inside `shard_map`: the fused
    attention kernels (Mosaic/cuDNN custom calls "cannot be automatically
    partitioned") and the chunked loss, which must chunk each device's own
    tokens, vocabulary-parallel over tensor.

Measured at slice scale (BRIEF §8): without the constraints the embedding
output took the table's sharding, every chip held the whole batch, and the
step wanted 731 GiB per v5e chip; the loss scanned all 4,096 global chunks on
every chip with a [1024, 256000] all-reduce each.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from kernels import attention as attention_kernels
from kernels import cross_entropy
from runtime import sharding

FUSED_ATTENTION = ("cudnn", "pallas_tpu")
TENSOR_AXIS = "tensor"


def ambient_mesh():
    """The automatic mesh this trace runs under, or None (no mesh, or inside shard_map)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.manual_axes:
        return None
    return mesh


def constrain(x: jax.Array, logical_axes: tuple[str, ...]) -> jax.Array:
    """`x` constrained to the layout its logical axes map to (identity without an automatic mesh)."""
    mesh = ambient_mesh()
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, sharding.partition_spec(logical_axes, x.shape, mesh))


def _batch_entry(mesh, rows: int):
    return sharding.partition_spec(("activation_batch",), (rows,), mesh)[0]


def attention(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, segment_ids_BxL, *, implementation: str) -> jax.Array:
    """`kernels.attention.attention`, per device when the kernel is a fused custom call on an automatic mesh.

    Each device attends over its own sequences (batch over data × fsdp) and,
    when both head counts divide by the tensor axis, its own heads: query head
    h reads kv head h // (H/G), so contiguous head blocks keep their kv heads.
    """
    mesh = ambient_mesh()
    if mesh is None or implementation not in FUSED_ATTENTION:
        return attention_kernels.attention(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, segment_ids_BxL,
                                           implementation=implementation)
    batch = _batch_entry(mesh, q_BxLxHxK.shape[0])
    ways = mesh.shape[TENSOR_AXIS]
    heads = TENSOR_AXIS if ways > 1 and not q_BxLxHxK.shape[2] % ways and not k_BxLxGxK.shape[2] % ways else None
    qkv = PartitionSpec(batch, None, heads, None)

    def local(q, k, v, *segment_ids):
        return attention_kernels.attention(q, k, v, segment_ids[0] if segment_ids else None,
                                           implementation=implementation)

    args = (q_BxLxHxK, k_BxLxGxK, v_BxLxGxK) + (() if segment_ids_BxL is None else (segment_ids_BxL,))
    specs = (qkv, qkv, qkv) + (() if segment_ids_BxL is None else (PartitionSpec(batch, None),))
    # check_vma off: the Pallas and cuDNN calls carry no varying-axes rules; every input and the
    # output are split over the same axes, so there is no replicated input whose gradient needs a sum.
    return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=qkv, check_vma=False)(*args)


class GatheredTable(NamedTuple):
    """A tied embedding table gathered once per step for both of its uses (see `gather_table`).

    copies_CxVxD: one copy per device of the table with d_model whole (the
      vocab dim split as the parameter's), laid out as a global [copies, V, D]
      array whose leading dim is split over `copy_axes`, so each device holds
      exactly its own copy and autodiff keeps each device's gradient its own.
    """

    copies_CxVxD: jax.Array
    vocab_axis: str | None
    copy_axes: tuple[str, ...]

    def spec(self) -> PartitionSpec:
        return PartitionSpec(self.copy_axes, self.vocab_axis, None)


def gather_table(table_VxD: jax.Array, table_axes: tuple[str, ...], dtype) -> GatheredTable | None:
    """The tied table in `dtype`, all-gathered over the axes that split d_model once for the lookup and the loss.

    Why: each use gathering the table itself (inside its own shard_map) gives
    the table two gradient reductions of its full size, one per use, which
    nothing merges: on the 470M to_code step on v5e-256 that was two
    all-reduces of bf16[256000, 1024] (0.5 GB each, a fifth of the step's
    collective bytes). Gathered once, the two uses' per-device gradients add
    up on each device first and leave in one reduction (the all-gather's
    transpose, a reduce-scatter onto the table's shards). None without an
    automatic mesh: the callers then use the parameter as before.

    The gather is by rows: each device first trades its [V, D/n] column
    shard for a [V/n, D] row block (an all-to-all of 1/n of the table), and
    the all-gather then concatenates whole rows, the major dim of the table's
    [V, D] layout. Gathering columns instead made XLA (libtpu, v5e) write the
    gathered table D-major and transpose it into the V-major layout the loss
    and lookup read, on slices where D/n is not a multiple of the 8-row tile:
    for the 2.8B step on v5e:16x16 that was 1.1 GB more per chip (10.69 →
    9.59 GB, `benchmarks/bench_aot.py`). Vocabularies that do not split into
    n row blocks are gathered by columns as before.
    """
    mesh = ambient_mesh()
    if mesh is None:
        return None
    table_VxD = table_VxD.astype(dtype)
    vocab_axis, embed_axis = sharding.partition_spec(table_axes, table_VxD.shape, mesh)
    copy_axes = tuple(axis for axis in mesh.axis_names if axis != vocab_axis)

    rows_first = embed_axis is not None and not (table_VxD.shape[0] // _ways(mesh, vocab_axis)) % mesh.shape[embed_axis]

    def local(table):
        if rows_first:
            table = jax.lax.all_to_all(table, embed_axis, split_axis=0, concat_axis=1, tiled=True)
            table = jax.lax.all_gather(table, embed_axis, axis=0, tiled=True)
        elif embed_axis is not None:
            table = jax.lax.all_gather(table, embed_axis, axis=1, tiled=True)
        return table[None]

    copies = jax.shard_map(local, mesh=mesh, in_specs=PartitionSpec(vocab_axis, embed_axis),
                           out_specs=PartitionSpec(copy_axes, vocab_axis, None), check_vma=False)(table_VxD)
    return GatheredTable(copies, vocab_axis, copy_axes)


def embed(table_VxD, inputs_BxL: jax.Array, table_axes: tuple[str, ...], dtype) -> jax.Array:
    """Rows of the embedding table for each token, [B, L, D] in `dtype`; per device on an automatic mesh.

    Inside `shard_map`: the table as the parameter is laid out, all-gathered
    over the axes that split it, and each device looks up its own batch rows.
    Its gradient then leaves as a reduce-scatter onto the table's shards
    (the transpose of the all-gather). Left to the partitioner, the lookup
    from a table split over d_model was an all-reduce of the whole table in
    the forward pass and an all-to-all of the scatter-add in the backward one
    (measured on v5e). On the mesh the table is gathered in `dtype` (half the
    bytes of float32 with bfloat16), so each device adds up its own tokens'
    rows of the gradient in `dtype` too; without a mesh the lookup and its
    gradient stay in the table's dtype, as they always were. A tied table
    comes already gathered (`GatheredTable`): only a vocab split is gathered here.
    """
    mesh = ambient_mesh()
    if mesh is None:
        return jnp.take(table_VxD, inputs_BxL, axis=0).astype(dtype)
    batch = _batch_entry(mesh, inputs_BxL.shape[0])
    if isinstance(table_VxD, GatheredTable):  # one copy per device: only a vocab split is left to gather
        table, table_spec = table_VxD.copies_CxVxD, table_VxD.spec()
        gathers, own = ((0, table_VxD.vocab_axis),), lambda copies: copies[0]
    else:
        table = table_VxD.astype(dtype)
        table_spec = sharding.partition_spec(table_axes, table.shape, mesh)
        gathers, own = tuple(enumerate(table_spec)), lambda shard: shard

    def local(table, inputs):
        table = own(table)
        for dim, axis in gathers:
            if axis is not None:
                table = jax.lax.all_gather(table, axis, axis=dim, tiled=True)
        return jnp.take(table, inputs, axis=0)

    return jax.shard_map(local, mesh=mesh, in_specs=(table_spec, PartitionSpec(batch, None)),
                         out_specs=PartitionSpec(batch, None, None), check_vma=False)(table, inputs_BxL)


def chunked_loss(hidden_BxLxD, weight, layout: str, weight_axes: tuple[str, ...], targets_BxL, mask_BxL, *,
                 chunk_size: int, reduction: str) -> jax.Array:
    """`kernels.cross_entropy.chunked_cross_entropy`, each device chunking its own tokens on an automatic mesh.

    Inside `shard_map` over the whole mesh: hidden states, targets and mask by
    their batch rows; the output weight as the parameter is laid out
    (`weight_axes`, its logical axes), all-gathered over the axis that splits
    d_model (fsdp) — so its gradient leaves as a reduce-scatter, the FSDP
    pattern — and split over vocab when tensor splits it (the kernel then
    combines row max, sum and target logit over tensor, and the hidden
    gradient leaves as per-vocab-block parts that shard_map's transpose adds
    up). Per-device sums come out as a vector and are added outside, so
    autodiff never transposes a collective of the loss; no [chunk, vocab]
    block ever crosses devices.
    """
    mesh = ambient_mesh()
    if mesh is None:
        return cross_entropy.chunked_cross_entropy(
            hidden_BxLxD, weight, targets_BxL, mask_BxL, chunk_size=chunk_size, weight_layout=layout,
            reduction=reduction)
    batch = _batch_entry(mesh, hidden_BxLxD.shape[0])
    copy = isinstance(weight, GatheredTable)  # a tied table gathered once for the lookup and here (gather_table)
    if copy:
        weight_spec, embed_axis, vocab_axis, weight = weight.spec(), None, weight.vocab_axis, weight.copies_CxVxD
    else:
        weight_spec = sharding.partition_spec(weight_axes, weight.shape, mesh)
        d_dim = 1 if layout == "VxD" else 0
        embed_axis, vocab_axis = weight_spec[d_dim], weight_spec[1 - d_dim]

    def local(hidden, w, targets, mask):
        if copy:
            w = w[0]
        if embed_axis is not None:
            w = jax.lax.all_gather(w, embed_axis, axis=d_dim, tiled=True)
        total = cross_entropy.chunked_cross_entropy(
            hidden, w, targets, mask, chunk_size=chunk_size, weight_layout=layout, reduction="sum",
            vocab_axis=vocab_axis)
        count = jnp.sum(mask.astype(jnp.float32))
        return total[None], count[None]

    # Every device returns its sum, except along the vocab axis, whose devices combined theirs inside
    # (one value per batch shard there: the output is replicated over that axis, and autodiff hands each
    # device the whole cotangent for its vocab block). Devices that repeat the same computation (tensor
    # without vocab parallelism) hold copies that are averaged, so each gets its share of the gradient.
    out_axes = tuple(axis for axis in mesh.axis_names if axis != vocab_axis)
    copies = _ways(mesh, out_axes) // _ways(mesh, batch)
    rows = PartitionSpec(batch, None)
    totals_N, counts_N = jax.shard_map(
        local, mesh=mesh,
        in_specs=(PartitionSpec(batch, None, None), weight_spec, rows, rows),
        out_specs=(PartitionSpec(out_axes), PartitionSpec(out_axes)),
        check_vma=False,
    )(hidden_BxLxD, weight, targets_BxL, mask_BxL)
    total = jnp.sum(totals_N) / copies
    if reduction == "sum":
        return total
    count = jnp.sum(counts_N) / copies
    return total / jnp.where(count > 0, count, 1.0)


def _ways(mesh, entry) -> int:
    if entry is None:
        return 1
    axes = entry if isinstance(entry, tuple) else (entry,)
    ways = 1
    for axis in axes:
        ways *= mesh.shape[axis]
    return ways
