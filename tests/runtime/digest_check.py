"""Run in a fresh process with 4 faked CPU devices (test_digest.py): the parameter digest of the same values
laid out over several meshes, computed on the devices, and the host digest of those values. Prints JSON."""

from __future__ import annotations

import json

import jax
import optax

from compiler.spec import MeshSpec
from runtime import digest, mesh as mesh_lib, model as model_lib, param_digest, sharding, train_state
from tests.runtime.runs import tiny_spec


def main():
    spec = tiny_spec()
    parts = train_state.model_parts(model_lib.model_config(spec.model, spec.dtypes, spec.kernels))
    one = mesh_lib.make_mesh(MeshSpec(), jax.devices()[:1])
    values = jax.device_get(train_state.init_params(parts, 0, train_state.state_layout(parts, optax.sgd(0.1), one)))
    out = {"host": digest.params_digest(values)}
    for axes in [(1, 2, 2), (4, 1, 1), (1, 4, 1), (1, 1, 4)]:
        mesh = mesh_lib.make_mesh(MeshSpec(chips=4, axes=dict(zip(("data", "fsdp", "tensor"), axes))))
        shardings = sharding.param_shardings(parts.logical_axes, parts.abstract_params, mesh)
        placed = jax.device_put(values, shardings)
        lanes = param_digest.digest_function(shardings, sharding.replicated(mesh))(placed)
        out["x".join(map(str, axes))] = param_digest.lanes_to_digest(placed, lanes)
        out["x".join(map(str, axes)) + "-specs"] = sorted({str(s.spec) for s in jax.tree.leaves(shardings)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
