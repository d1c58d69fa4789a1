"""One optimizer step as a pure function, and its one-time compilation with shardings and donation.

Why module-level and pure (nanodo): `train_step(state, batch)` depends only on
its arguments and the static model/optimizer, so the same inputs give the same
bits, and it is compiled once (ahead of time, `lower(...).compile()`) with the
state's and the batch's shardings fixed. The input state is donated, so the
params and optimizer state are updated in place instead of doubling memory.

Two ways to add up the gradient shards of a data-parallel batch:

* "xla": XLA's own all-reduce, placed by the SPMD partitioner. Fastest; on
  TPU and GPU the reduction order is fixed by the hardware topology. On CPU
  over several processes, gloo's ring all-reduce sums in an order that
  depends on how the devices are split over processes, so 4 devices in one
  process and 2 × 2 in two processes give other bits (measured; see
  runtime/DETERMINISM.md).
* "fixed-order": the step runs in `shard_map`, each device computes the loss
  sum and gradients of its rows, and shards are combined by exact data
  movement (all_to_all, all_gather) plus a sum in device order that every
  device computes with the same program. The bits then do not depend on the
  process layout at all. After the sum every device applies the (identical)
  optimizer update to the full parameters, which costs memory and compute on
  large meshes, so it is what runix uses on CPU (`runtime.numerics`), where
  meshes are small and the layout is the thing that varies.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from runtime.sharding import BATCH_AXES
from runtime.train_state import StateLayout, TrainState

REDUCTIONS = ("xla", "fixed-order")


def train_step(
    state: TrainState, batch: dict[str, jax.Array], *, graphdef: Any, tx: optax.GradientTransformation,
    learning_rate: Callable, grad_shardings: Any = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """Loss and gradients on `batch`, one AdamW update; returns the new state and scalar metrics.

    `grad_shardings` (the parameters' own) pins each gradient to its
    parameter's layout as soon as it exists: the partitioner then turns the
    per-device partial sums of a weight gradient straight into a
    reduce-scatter onto the fsdp shards, instead of all-reducing the whole
    gradient and slicing it afterwards (measured on v5e: no reduce-scatter at
    all without it).
    """

    def loss_fn(params):
        return nnx.merge(graphdef, params).loss(batch)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    if grad_shardings is not None:
        grads = jax.lax.with_sharding_constraint(grads, grad_shardings)
    return _update(state, loss, grads, tx, learning_rate)


def _update(state: TrainState, loss, grads, tx, learning_rate):
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": learning_rate(state.step)}
    return state._replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def fixed_order_train_step(
    state: TrainState, batch: dict[str, jax.Array], *, graphdef: Any, tx: optax.GradientTransformation,
    learning_rate: Callable, mesh: Mesh,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """`train_step` with gradients summed over the batch axes in a fixed order (see the module docstring)."""
    batch_spec = PartitionSpec(BATCH_AXES, None)

    def local_step(state: TrainState, local_batch):
        def loss_sum(params):
            local = nnx.merge(graphdef, params).loss(local_batch, reduction="sum")
            return local, local

        grads, local_sum = jax.grad(loss_sum, has_aux=True)(state.params)
        local_count = jnp.sum(local_batch["loss_mask"].astype(jnp.float32))
        # One combined reduction per step (not one per parameter): a collective costs
        # milliseconds over gloo, and the order of the sum is fixed either way.
        (loss_total, count), grads = ordered_sum_tree(((local_sum, local_count), grads), mesh)
        denominator = jnp.where(count > 0, count, 1.0)
        grads = jax.tree.map(lambda g: g / denominator, grads)
        return _update(state, loss_total / denominator, grads, tx, learning_rate)

    return jax.shard_map(
        local_step, mesh=mesh,
        in_specs=(PartitionSpec(), {name: batch_spec for name in batch}),
        out_specs=PartitionSpec(),
        check_vma=False,  # the outputs are replicated by construction (every device sums the same gathered shards)
    )(state, batch)


def ordered_sum(x: jax.Array, mesh: Mesh) -> jax.Array:
    """Sum of `x` over the devices of the batch axes, added in device order, identical on every device.

    Each device gets the k-th slice of every device's x (all_to_all), adds
    those n slices in device order, and the sums are gathered back
    (all_gather): two exact data movements around one fixed-order sum, the
    traffic of a ring all-reduce.
    """
    n = math.prod(mesh.shape[axis] for axis in BATCH_AXES)
    if n == 1:
        return x
    flat = x.reshape(-1)
    pad = -flat.size % n
    chunks_NxC = jnp.pad(flat, (0, pad)).reshape(n, -1)
    from_each_NxC = jax.lax.all_to_all(chunks_NxC, BATCH_AXES, 0, 0, tiled=True)
    mine_C = _sum_in_order(from_each_NxC)
    total = jax.lax.all_gather(mine_C, BATCH_AXES, tiled=True)
    return total[: flat.size].reshape(x.shape)


def ordered_sum_tree(tree, mesh: Mesh):
    """`ordered_sum` of every leaf of a pytree through one flat float32 buffer (one all_to_all, one all_gather).

    Leaves are summed in float32 and cast back to their dtype. With one batch
    shard there is nothing to add and the tree is returned as it is.
    """
    if math.prod(mesh.shape[axis] for axis in BATCH_AXES) == 1:
        return tree
    leaves, treedef = jax.tree.flatten(tree)
    flat = jnp.concatenate([leaf.astype(jnp.float32).reshape(-1) for leaf in leaves])
    total = ordered_sum(flat, mesh)
    out, offset = [], 0
    for leaf in leaves:
        out.append(total[offset: offset + leaf.size].reshape(leaf.shape).astype(leaf.dtype))
        offset += leaf.size
    return jax.tree.unflatten(treedef, out)


def _sum_in_order(rows_NxC: jax.Array) -> jax.Array:
    """rows[0] + rows[1] + ... + rows[n-1], left to right, spelled out so no reduction tree is chosen for us."""
    total = rows_NxC[0]
    for i in range(1, rows_NxC.shape[0]):
        total = total + rows_NxC[i]
    return total


def compile_train_step(
    graphdef: Any, tx: optax.GradientTransformation, learning_rate: Callable, layout: StateLayout,
    abstract_batch: dict[str, jax.ShapeDtypeStruct], batch_sharding: NamedSharding, reduction: str = "xla",
) -> Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]:
    """The compiled step: state in/out with its layout, batch over (data, fsdp), metrics replicated, state donated."""
    return lower_train_step(graphdef, tx, learning_rate, layout, abstract_batch, batch_sharding, reduction).compile()


def lower_train_step(
    graphdef: Any, tx: optax.GradientTransformation, learning_rate: Callable, layout: StateLayout,
    abstract_batch: dict[str, jax.ShapeDtypeStruct], batch_sharding: NamedSharding, reduction: str = "xla",
) -> jax.stages.Lowered:
    """The step lowered for its mesh, not yet compiled (`runtime.aot` compiles it for a TPU topology).

    Traced under the mesh as jax's ambient mesh, so the model's activation
    constraints and per-device kernels (runtime.spmd) see it; inside the
    fixed-order step's shard_map every axis is manual and they stand aside.
    """
    if reduction == "xla":
        step = functools.partial(train_step, graphdef=graphdef, tx=tx, learning_rate=learning_rate,
                                 grad_shardings=layout.shardings.params)
    elif reduction == "fixed-order":
        step = functools.partial(fixed_order_train_step, graphdef=graphdef, tx=tx, learning_rate=learning_rate,
                                 mesh=batch_sharding.mesh)
    else:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    batch_shardings = {name: batch_sharding for name in abstract_batch}
    replicated = NamedSharding(batch_sharding.mesh, PartitionSpec())
    jitted = jax.jit(
        step,
        in_shardings=(layout.shardings, batch_shardings),
        out_shardings=(layout.shardings, replicated),
        donate_argnums=0,
    )
    with jax.set_mesh(batch_sharding.mesh):
        return jitted.lower(layout.abstract, abstract_batch)
