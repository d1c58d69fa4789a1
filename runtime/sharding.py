"""How arrays are split over the mesh: one table of rules from logical axis names to mesh axes.

Why logical names: the model tags each parameter, and each activation it
constrains, with what its dims *mean* (vocab, embed, heads, mlp, ...; the
activations' names start with `activation_`); this module alone decides which
mesh axis each meaning maps to (`RULES`, the one table). Parameters: FSDP
splits the embed dim of every matrix, tensor parallelism splits heads, MLP
width and vocab (Megatron's column/row split: q/k/v, gate and up by their
output columns, o and down by their input rows); norm gains and head width
stay whole. Activations: the batch over (data, fsdp) from the embedding on,
the residual stream's features whole, heads, MLP width and vocab over tensor.
A dim that does not divide by its mesh axis stays replicated rather than
failing, and `shardings_report` says so.

Optimizer state is sharded like the parameters it mirrors (Adam's mu/nu)
through `optax.tree_map_params`; scalars (counts) are replicated. The brief
measured that an optimizer state left to default placement changes the bits,
so its layout is fixed here, not left to propagation.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXES = ("data", "fsdp")

RULES: Mapping[str, str | tuple[str, ...] | None] = {
    # parameters
    "vocab": "tensor",
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "head_dim": None,
    "norm": None,
    # activations (runtime.spmd.constrain)
    "activation_batch": BATCH_AXES,
    "activation_length": None,
    "activation_embed": None,  # the residual stream stays whole per sequence: P((data, fsdp), None, None)
    "activation_heads": "tensor",
    "activation_kv_heads": "tensor",
    "activation_head_dim": None,
    "activation_mlp": "tensor",
    "activation_vocab": "tensor",
}


def partition_spec(logical_axes: tuple[str, ...], shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """Mesh axis per dim from the logical names; a dim that does not divide (or a reused axis) is replicated.

    A rule naming several mesh axes (the batch over data and fsdp) keeps them
    together as one entry when the dim divides by their product, the way the
    batch itself is placed; otherwise the dim stays whole.
    """
    used: set[str] = set()
    spec = []
    for name, size in zip(logical_axes, shape):
        axis = RULES[name]
        if isinstance(axis, tuple):
            ways = 1
            for a in axis:
                ways *= mesh.shape[a]
            if any(a in used for a in axis) or size % ways:
                spec.append(None)
            else:
                spec.append(axis)
                used.update(axis)
        elif axis is None or axis in used or mesh.shape[axis] == 1 or size % mesh.shape[axis]:
            spec.append(None)
        else:
            spec.append(axis)
            used.add(axis)
    return PartitionSpec(*spec)


def param_shardings(logical_axes, abstract_params, mesh: Mesh):
    """NamedSharding per parameter (same tree as the params) from their logical axes and shapes."""
    return jax.tree.map(
        lambda axes, p: NamedSharding(mesh, partition_spec(axes, p.shape, mesh)),
        logical_axes, abstract_params, is_leaf=lambda x: isinstance(x, tuple),
    )


def optimizer_shardings(tx: optax.GradientTransformation, abstract_params, params_shardings, mesh: Mesh):
    """NamedSharding per optimizer-state leaf: like its parameter for per-parameter state, replicated otherwise."""
    abstract_state = jax.eval_shape(tx.init, abstract_params)
    replicated = NamedSharding(mesh, PartitionSpec())
    return optax.tree_map_params(
        tx, lambda _, sharding: sharding, abstract_state, params_shardings,
        transform_non_params=lambda _: replicated,
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Rows of a [B, L] batch split over data and fsdp; sequence dim whole."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, None))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def shardings_report(shardings) -> dict[str, str]:
    """'path' -> PartitionSpec as text, for the run record (what the bits were computed with)."""
    flat = jax.tree_util.tree_flatten_with_path(shardings)[0]
    return {jax.tree_util.keystr(path, simple=True, separator="/"): str(s.spec) for path, s in flat}
