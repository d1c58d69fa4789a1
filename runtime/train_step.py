"""One optimizer step as a pure function, and its one-time compilation with shardings and donation.

Why module-level and pure (nanodo): `train_step(state, batch)` depends only on
its arguments and the static model/optimizer, so the same inputs give the same
bits, and it is compiled once (ahead of time, `lower(...).compile()`) with the
state's and the batch's shardings fixed. The input state is donated, so the
params and optimizer state are updated in place instead of doubling memory.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import optax
from flax import nnx

from runtime.train_state import StateLayout, TrainState


def train_step(
    state: TrainState, batch: dict[str, jax.Array], *, graphdef: Any, tx: optax.GradientTransformation,
    learning_rate: Callable,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """Loss and gradients on `batch`, one AdamW update; returns the new state and scalar metrics."""

    def loss_fn(params):
        return nnx.merge(graphdef, params).loss(batch)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": learning_rate(state.step)}
    return TrainState(state.step + 1, params, opt_state, state.rng), metrics


def compile_train_step(
    graphdef: Any, tx: optax.GradientTransformation, learning_rate: Callable, layout: StateLayout,
    abstract_batch: dict[str, jax.ShapeDtypeStruct], batch_sharding: jax.sharding.NamedSharding,
) -> Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]:
    """The compiled step: state in/out with its layout, batch over (data, fsdp), metrics replicated, state donated."""
    step = functools.partial(train_step, graphdef=graphdef, tx=tx, learning_rate=learning_rate)
    batch_shardings = {name: batch_sharding for name in abstract_batch}
    replicated = jax.sharding.NamedSharding(batch_sharding.mesh, jax.sharding.PartitionSpec())
    jitted = jax.jit(
        step,
        in_shardings=(layout.shardings, batch_shardings),
        out_shardings=(layout.shardings, replicated),
        donate_argnums=0,
    )
    return jitted.lower(layout.abstract, abstract_batch).compile()
