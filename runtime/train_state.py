"""The training state (what one step reads and writes, and a checkpoint holds) and how a fresh one is made.

Why a NamedTuple of plain pytrees: params are the pure dict of `nnx.split`
(sorted, stable paths that the digest and checkpoints use), the optimizer
state is optax's, and the step is a device scalar (the data position: batch
`step` is the next one to train on).

No PRNG key: after initialization nothing in training draws a random number
(the model has no dropout; batch `step` is a pure function of the data seed
and the step; weights are drawn once, from fold_in(key(init seed), crc32(path))).
A key that nothing consumed used to be carried and checkpointed; it only
suggested randomness that is not there. A stochastic addition would add its
key here, with the use that makes it replay and resume bit-exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from runtime import model as model_lib
from runtime import sharding as sharding_lib


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar: steps taken = index of the next batch
    params: Any  # pure dict of arrays, paths as in the nnx module
    opt_state: Any  # optax state, per-parameter leaves sharded like params


@dataclasses.dataclass(frozen=True)
class ModelParts:
    """The static side of the model: its graph definition, abstract params, their logical axes."""

    config: model_lib.ModelConfig
    graphdef: Any
    abstract_params: Any  # pure dict of jax.ShapeDtypeStruct
    logical_axes: Any  # pure dict of tuples of logical axis names
    init_kinds: Any  # pure dict of "weight" | "ones"


def model_parts(config: model_lib.ModelConfig) -> ModelParts:
    """Trace the model's constructor abstractly (no FLOPs, no memory) for its structure and metadata."""
    abstract_model = nnx.eval_shape(lambda: model_lib.Transformer(config, nnx.Rngs(params=0)))
    graphdef, state = nnx.split(abstract_model, nnx.Param)
    abstract_params = nnx.to_pure_dict(state)
    flat = list(nnx.to_flat_state(state))
    logical_axes = _unflatten({path: variable.get_metadata()[model_lib.AXES] for path, variable in flat})
    init_kinds = _unflatten({path: variable.get_metadata()[model_lib.INIT] for path, variable in flat})
    return ModelParts(config, graphdef, abstract_params, logical_axes, init_kinds)


def _unflatten(flat: dict[tuple, Any]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


@dataclasses.dataclass(frozen=True)
class StateLayout:
    """Where each leaf of a TrainState lives on the mesh, and its abstract shape."""

    shardings: TrainState
    abstract: TrainState  # ShapeDtypeStructs carrying the shardings (restore targets)


def state_layout(parts: ModelParts, tx: optax.GradientTransformation, mesh: Mesh) -> StateLayout:
    params_sh = sharding_lib.param_shardings(parts.logical_axes, parts.abstract_params, mesh)
    opt_sh = sharding_lib.optimizer_shardings(tx, parts.abstract_params, params_sh, mesh)
    rep = sharding_lib.replicated(mesh)
    shardings = TrainState(step=rep, params=params_sh, opt_state=opt_sh)
    shapes = TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32),
        params=parts.abstract_params,
        opt_state=jax.eval_shape(tx.init, parts.abstract_params),
    )
    abstract = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)
    return StateLayout(shardings, abstract)


def init_params(parts: ModelParts, seed: int, layout: StateLayout):
    """Freshly initialized params, each drawn directly into its shards.

    The weight at path p is `initializer(fold_in(key(seed), crc32(p)))`: it
    depends on the seed and its own path only, not on the order parameters
    are declared in or on the sharding (`jax_threefry_partitionable`, pinned
    by runtime.numerics), so every mesh starts from the same weights.

    Why one small jitted draw per parameter instead of one jit of the whole
    constructor: XLA:CPU compiles the partitionable threefry slowly (seconds
    for a two-layer model), and per-parameter draws of equal shape share one
    compiled program across layers and across runs in a process.
    """
    config = parts.config
    key = jax.random.key(seed)

    def draw(path, abstract, kind, sharding):
        path_id = zlib.crc32("/".join(str(getattr(k, "key", k)) for k in path).encode())
        return _draw(jax.random.fold_in(key, path_id), shape=abstract.shape, dtype=abstract.dtype, kind=kind,
                     initializer=config.initializer, std=config.init_std, sharding=sharding)

    return jax.tree_util.tree_map_with_path(draw, parts.abstract_params, parts.init_kinds, layout.shardings.params)


@functools.partial(jax.jit, static_argnames=("shape", "dtype", "kind", "initializer", "std", "sharding"))
def _draw(key, *, shape, dtype, kind, initializer, std, sharding):
    if kind == "ones":
        value = jnp.ones(shape, dtype)
    else:
        value = model_lib.weight_initializer(initializer, std)(key, shape, dtype)
    return jax.lax.with_sharding_constraint(value, sharding)


def init_opt_state(tx: optax.GradientTransformation, params, layout: StateLayout):
    """Zero optimizer state, sharded like the params (jit with out_shardings, not default placement)."""
    return jax.jit(tx.init, out_shardings=layout.shardings.opt_state)(params)


def fresh_state(params, opt_state, layout: StateLayout) -> TrainState:
    """A TrainState at step 0 around the given params and optimizer state."""
    step = jnp.zeros((), jnp.int32)
    return TrainState(step=jax.device_put(step, layout.shardings.step), params=params, opt_state=opt_state)
