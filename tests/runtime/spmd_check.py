"""Run in a fresh process with 4 faked CPU devices (test_spmd.py): the model's loss and gradients under
automatic meshes (activation constraints, per-device embedding and vocab-parallel chunked loss) against
the same model without a mesh. Prints one JSON line per mesh: the largest relative differences."""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from compiler.spec import MeshSpec
from runtime import device_batches as batches, mesh as mesh_lib, model as model_lib, sharding, train_state
from tests.runtime.runs import tiny_spec


def main(meshes):
    spec = tiny_spec(model={"tied_embeddings": sys.argv[1] == "tied"},
                     kernels={"cross_entropy": "chunked", "cross_entropy_chunk": 16})
    config = model_lib.model_config(spec.model, spec.dtypes, spec.kernels, document_masking=True)
    parts = train_state.model_parts(config)
    one = mesh_lib.make_mesh(MeshSpec(), jax.devices()[:1])
    layout = train_state.state_layout(parts, __import__("optax").sgd(0.1), one)
    params = jax.device_get(train_state.init_params(parts, 0, layout))
    batch = {k: np.asarray(v) for k, v in batches.SyntheticBatches(512, 8, 32).batch_at(0).items()}

    def loss_and_grads(p, b):
        return jax.value_and_grad(lambda q: nnx.merge(parts.graphdef, q).loss(b))(p)

    want_loss, want_grads = jax.jit(loss_and_grads)(params, batch)
    for axes in meshes:
        mesh = mesh_lib.make_mesh(MeshSpec(chips=4, axes=dict(zip(("data", "fsdp", "tensor"), axes))))
        p_sh = sharding.param_shardings(parts.logical_axes, parts.abstract_params, mesh)
        b_sh = {k: sharding.batch_sharding(mesh) for k in batch}
        with jax.set_mesh(mesh):
            lowered = jax.jit(loss_and_grads, in_shardings=(p_sh, b_sh)).lower(params, batch)
        loss, grads = lowered.compile()(jax.device_put(params, p_sh), jax.device_put(batch, b_sh))
        worst = max(float(jnp.max(jnp.abs(g - w)) / (jnp.max(jnp.abs(w)) + 1e-30))
                    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)))
        print(json.dumps({"axes": axes, "loss": abs(float(loss) - float(want_loss)) / abs(float(want_loss)),
                          "grads": worst, "manual": lowered.as_text().count("manual_computation")}))


if __name__ == "__main__":
    main([(1, 2, 2), (1, 1, 4), (4, 1, 1), (2, 2, 1)])
