"""Sharding rules: logical axes to mesh axes, divisibility fallback, batch over (data, fsdp)."""

from __future__ import annotations

import jax
from jax.sharding import AbstractMesh, PartitionSpec

from compiler.spec import MeshSpec
from runtime import mesh as mesh_lib
from runtime import sharding


def abstract_mesh(data=1, fsdp=1, tensor=1):
    return AbstractMesh((data, fsdp, tensor), mesh_lib.AXIS_NAMES)


def test_fsdp_and_tensor_rules():
    mesh = abstract_mesh(fsdp=2, tensor=2)
    assert sharding.partition_spec(("embed", "heads", "head_dim"), (64, 4, 16), mesh) == PartitionSpec("fsdp", "tensor", None)
    assert sharding.partition_spec(("vocab", "embed"), (4096, 64), mesh) == PartitionSpec("tensor", "fsdp")
    assert sharding.partition_spec(("mlp", "embed"), (256, 64), mesh) == PartitionSpec("tensor", "fsdp")
    assert sharding.partition_spec(("norm",), (64,), mesh) == PartitionSpec(None)


def test_indivisible_dims_stay_whole():
    mesh = abstract_mesh(tensor=4)
    assert sharding.partition_spec(("embed", "kv_heads", "head_dim"), (64, 2, 16), mesh) == PartitionSpec(None, None, None)


def test_data_parallel_replicates_params():
    assert sharding.partition_spec(("embed", "mlp"), (64, 256), abstract_mesh(data=4)) == PartitionSpec(None, None)


def test_mesh_needs_the_right_device_count():
    import pytest

    with pytest.raises(ValueError, match="need 4 devices"):
        mesh_lib.make_mesh(MeshSpec(chips=4, axes={"data": 4}), jax.devices()[:1])
    mesh = mesh_lib.make_mesh(MeshSpec(), jax.devices()[:1])
    assert mesh_lib.describe(mesh)["axes"] == {"data": 1, "fsdp": 1, "tensor": 1}
    assert sharding.batch_sharding(mesh).spec == PartitionSpec(("data", "fsdp"), None)
