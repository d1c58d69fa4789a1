"""The compiled train step: both gradient reductions agree, the state is donated, metrics are scalars."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from runtime import device_batches as batches, mesh as mesh_lib, model as model_lib, optimizer, schedule, sharding
from runtime import train_state as train_state_lib
from runtime.train_step import compile_train_step
from tests.runtime.runs import tiny_spec


def start(spec):
    config = model_lib.model_config(spec.model, spec.dtypes, spec.kernels, document_masking=True)
    parts = train_state_lib.model_parts(config)
    mesh = mesh_lib.make_mesh(spec.mesh, jax.devices()[:1])
    lr = schedule.learning_rate_schedule(spec.schedule)
    tx = optimizer.make_optimizer(spec.optimizer, lr)
    layout = train_state_lib.state_layout(parts, tx, mesh)
    params = train_state_lib.init_params(parts, 0, layout)
    state = train_state_lib.fresh_state(params, train_state_lib.init_opt_state(tx, params, layout), layout)
    return parts, tx, lr, layout, mesh, state


@pytest.mark.parametrize("reduction", ["xla", "fixed-order"])
def test_step_updates_and_donates(reduction):
    spec = tiny_spec()
    parts, tx, lr, layout, mesh, state = start(spec)
    batch_sharding = sharding.batch_sharding(mesh)
    step = compile_train_step(parts.graphdef, tx, lr, layout, batches.abstract_batch(4, 32), batch_sharding,
                              reduction=reduction)
    source = batches.SyntheticBatches(512, 4, 32)
    # Copies: on CPU device_get can return zero-copy views, which would keep the buffers alive and block donation.
    before = jax.tree.map(lambda a: np.array(a, copy=True), state.params)
    old_leaf = jax.tree.leaves(state.params)[0]
    new_state, metrics = step(state, batches.place_batch(source.batch_at(0), batch_sharding, 4))
    assert old_leaf.is_deleted()  # the input state was donated
    assert int(new_state.step) == 1 and set(metrics) == {"loss", "grad_norm", "lr"}
    assert all(np.shape(v) == () for v in metrics.values())
    np.testing.assert_allclose(float(metrics["loss"]), np.log(512), rtol=0.05)
    assert float(metrics["lr"]) == 0.0  # warmup starts at 0: the first update moves only the weight decay term
    new_state, metrics = step(new_state, batches.place_batch(source.batch_at(1), batch_sharding, 4))
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), before, new_state.params)
    assert all(jax.tree.leaves(moved))


def test_reductions_agree_on_one_device():
    spec = tiny_spec()
    losses = {}
    for reduction in ("xla", "fixed-order"):
        parts, tx, lr, layout, mesh, state = start(spec)
        batch_sharding = sharding.batch_sharding(mesh)
        step = compile_train_step(parts.graphdef, tx, lr, layout, batches.abstract_batch(4, 32), batch_sharding,
                                  reduction=reduction)
        source = batches.SyntheticBatches(512, 4, 32)
        trace = []
        for s in range(3):
            state, metrics = step(state, batches.place_batch(source.batch_at(s), batch_sharding, 4))
            trace.append(float(metrics["loss"]))
        losses[reduction] = trace
    np.testing.assert_allclose(losses["xla"], losses["fixed-order"], rtol=1e-5)


def test_unknown_reduction_is_refused():
    spec = tiny_spec()
    parts, tx, lr, layout, mesh, _ = start(spec)
    with pytest.raises(ValueError, match="reduction"):
        compile_train_step(parts.graphdef, tx, lr, layout, batches.abstract_batch(4, 32),
                           sharding.batch_sharding(mesh), reduction="ring")
