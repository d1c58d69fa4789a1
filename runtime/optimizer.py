"""AdamW with global-norm clipping, as the spec's `optimizer` states, and the init-chain's state carry.

Why this chain: clip the raw gradients' global norm first (so one bad batch
cannot blow up the moments), then optax's AdamW (bias-corrected moments,
decoupled weight decay, both multiplied by the scheduled LR). Weight decay
skips one-dimensional parameters (RMSNorm scales): decaying a gain towards 0
fights the normalization and is the common practice in LM pretraining.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax

from compiler.spec import AdamW


def decay_mask(params):
    """True for parameters weight decay applies to: everything with two or more dims."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(spec: AdamW, learning_rate: Callable) -> optax.GradientTransformation:
    """clip_by_global_norm (unless clip_norm is null) → AdamW(b1, b2, eps, weight_decay) with the LR schedule."""
    adamw = optax.adamw(
        learning_rate=learning_rate, b1=spec.b1, b2=spec.b2, eps=spec.eps,
        weight_decay=spec.weight_decay, mask=decay_mask,
    )
    if spec.clip_norm is None:
        return optax.chain(optax.identity(), adamw)  # same state structure with or without clipping
    return optax.chain(optax.clip_by_global_norm(spec.clip_norm), adamw)


def carry_adam_moments(parent_state, fresh_state):
    """The child's optimizer state with the parent's Adam moments (and their step count) carried over.

    Why only the Adam part: the moments and their count belong together (bias
    correction divides by 1 - b^count; resetting the count while keeping the
    moments would inflate the first updates), but the schedule's step counter
    must restart at 0, since the child's own schedule (e.g. a re-warmup) starts
    at its step 0.
    """
    is_adam = lambda node: isinstance(node, optax.ScaleByAdamState)  # noqa: E731
    parent_nodes = [n for n in jax.tree.leaves(parent_state, is_leaf=is_adam) if is_adam(n)]
    fresh_leaves, treedef = jax.tree.flatten(fresh_state, is_leaf=is_adam)
    adam_positions = [i for i, n in enumerate(fresh_leaves) if is_adam(n)]
    if len(parent_nodes) != len(adam_positions):
        raise ValueError("parent optimizer state does not have the child's AdamW structure")
    for position, node in zip(adam_positions, parent_nodes):
        fresh_leaves[position] = node
    return jax.tree.unflatten(treedef, fresh_leaves)
