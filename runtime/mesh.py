"""The device mesh a spec's `mesh.axes` describes: (data, fsdp, tensor) over the run's devices.

Why axis types are stated: `jax.make_mesh` defaults to *explicit* axis types in
jax 0.10 (sharding becomes part of every array's type and jnp ops must agree on
it). The runtime shards by `jax.jit(in_shardings=..., out_shardings=...)` and
lets XLA propagate inside the step, which is the *auto* mode, so every axis is
declared `AxisType.Auto` here.

Why devices keep `jax.devices()` order: that order is by global device id, the
same whether 4 devices live in one process or in two, so the same spec lays
out the same mesh (device i holds the same shard) on either layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from compiler.spec import MeshSpec

AXIS_NAMES = ("data", "fsdp", "tensor")


def mesh_shape(spec: MeshSpec) -> tuple[int, int, int]:
    axes = spec.axes
    return (axes.data, axes.fsdp, axes.tensor)


def make_mesh(spec: MeshSpec, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A `Mesh` of shape (data, fsdp, tensor) over `devices` (default: all devices, by global id).

    Raises ValueError when the device count is not the axes' product: a run on
    a different number of devices would be a different run (its bits differ).
    """
    devices = list(jax.devices() if devices is None else devices)
    devices.sort(key=lambda d: d.id)
    shape = mesh_shape(spec)
    needed = int(np.prod(shape))
    if len(devices) != needed:
        raise ValueError(
            f"mesh axes data×fsdp×tensor = {'×'.join(map(str, shape))} need {needed} devices, "
            f"but {len(devices)} are visible (on cpu, the launcher fakes them with XLA_FLAGS; see runtime.numerics)"
        )
    return Mesh(np.array(devices, dtype=object).reshape(shape), AXIS_NAMES, axis_types=(AxisType.Auto,) * len(AXIS_NAMES))


def describe(mesh: Mesh) -> dict:
    """The layout as data (recorded in the digest): axis sizes, device ids in mesh order, and their processes."""
    return {
        "axes": dict(zip(mesh.axis_names, (int(n) for n in mesh.devices.shape))),
        "device_ids": [int(d.id) for d in mesh.devices.flat],
        "process_of_device": [int(d.process_index) for d in mesh.devices.flat],
        "platform": mesh.devices.flat[0].platform,
    }
