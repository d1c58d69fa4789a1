"""AdamW with clipping, weight-decay mask, and carrying a parent's moments into a child."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from compiler.spec import AdamW
from runtime import optimizer


def params():
    return {"w": jnp.ones((3, 2)), "norm": jnp.ones((2,))}


def test_weight_decay_skips_vectors():
    tx = optimizer.make_optimizer(AdamW(weight_decay=0.5, clip_norm=None), lambda step: 0.1)
    p = params()
    zero = jax.tree.map(jnp.zeros_like, p)
    updates, _ = tx.update(zero, tx.init(p), p)  # zero gradient: only decay moves weights
    np.testing.assert_allclose(np.asarray(updates["w"]), -0.1 * 0.5 * np.ones((3, 2)), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(updates["norm"]), np.zeros(2))


def test_clipping_bounds_the_gradient_norm():
    """Adam's first moment after one step is (1 - b1) × the clipped gradient: its norm shows the clip."""
    p = params()
    grads = {"w": jnp.full((3, 2), 100.0), "norm": jnp.full((2,), 100.0)}
    for clip_norm, expected in ((1.0, 0.5), (None, 0.5 * float(optax.tree.norm(grads)))):
        tx = optimizer.make_optimizer(AdamW(b1=0.5, clip_norm=clip_norm), lambda step: 1.0)
        _, state = tx.update(grads, tx.init(p), p)
        np.testing.assert_allclose(float(optax.tree.norm(state[1][0].mu)), expected, rtol=1e-5)


def test_carry_keeps_moments_and_restarts_the_schedule():
    schedule_counts = []
    tx = optimizer.make_optimizer(AdamW(), lambda step: (schedule_counts.append(step), 1e-3)[1])
    p = params()
    grads = jax.tree.map(lambda x: 0.5 * jnp.ones_like(x), p)
    parent = tx.init(p)
    for _ in range(3):
        _, parent = tx.update(grads, parent, p)
    child = optimizer.carry_adam_moments(parent, tx.init(p))
    parent_adam, child_adam = parent[1][0], child[1][0]
    assert int(child_adam.count) == 3
    jax.tree.map(np.testing.assert_array_equal, parent_adam.mu, child_adam.mu)
    jax.tree.map(np.testing.assert_array_equal, parent_adam.nu, child_adam.nu)
    schedule_state = [s for s in jax.tree.leaves(child[1], is_leaf=lambda n: isinstance(n, optax.ScaleByScheduleState))
                      if isinstance(s, optax.ScaleByScheduleState)]
    assert [int(s.count) for s in schedule_state] == [0]
