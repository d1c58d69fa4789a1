"""The model under automatic meshes (runtime.spmd): same loss and gradients as without a mesh, and the
CPU path (no mesh, or inside the fixed-order shard_map) untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AbstractMesh, PartitionSpec

from runtime import mesh as mesh_lib
from runtime import sharding, spmd
from tests.runtime.runs import REPO


@pytest.mark.parametrize("tied", ["tied", "untied"])
def test_loss_and_gradients_agree_under_every_mesh(tied):
    """4 faked CPU devices: 1×2×2, 1×1×4 (heads not split), 4×1×1 and 2×2×1 against no mesh."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_"))}
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-m", "tests.runtime.spmd_check", tied], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 4
    for row in rows:
        assert row["loss"] < 1e-6 and row["grads"] < 1e-5, row
        assert row["manual"] >= 2  # the embedding and the loss ran per device


def test_constraints_stand_aside_without_an_automatic_mesh():
    x = jnp.ones((4, 8, 16))
    assert spmd.ambient_mesh() is None
    assert spmd.constrain(x, ("activation_batch", "activation_length", "activation_embed")) is x


def test_activation_rules():
    mesh = AbstractMesh((2, 4, 2), mesh_lib.AXIS_NAMES)
    residual = ("activation_batch", "activation_length", "activation_embed")
    assert sharding.partition_spec(residual, (16, 128, 64), mesh) == PartitionSpec(("data", "fsdp"), None, None)
    heads = ("activation_batch", "activation_length", "activation_heads", "activation_head_dim")
    assert sharding.partition_spec(heads, (16, 128, 4, 16), mesh) == PartitionSpec(("data", "fsdp"), None, "tensor", None)
    # A batch that does not divide by data × fsdp stays whole rather than failing.
    assert sharding.partition_spec(residual, (6, 128, 64), mesh) == PartitionSpec(None, None, None)


def test_inside_shard_map_every_axis_is_manual():
    mesh = mesh_lib.make_mesh(__import__("compiler.spec", fromlist=["MeshSpec"]).MeshSpec(), jax.devices()[:1])
    seen = []

    def body(x):
        seen.append(spmd.ambient_mesh())
        return x

    with jax.set_mesh(mesh):
        jax.jit(jax.shard_map(body, mesh=mesh, in_specs=PartitionSpec(), out_specs=PartitionSpec()))(jnp.ones(2))
    assert seen == [None]
