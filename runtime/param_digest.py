"""The parameter digest computed where the parameters live: a few bytes per parameter leave the devices.

Why: the digest every `digest_every` steps used to gather every parameter to
every host and hash it there, inside the step loop: at 2.8B parameters that
is 11 GB through each host per digest. Here each parameter is reduced on its
own devices by a jitted program (runtime.digest has the lane function and
why integer lane sums do not depend on the layout); XLA adds the per-shard
lanes with one tiny integer all-reduce, and only [4] uint32 per parameter
reach the host. The same values under any mesh give the same digest, and
`runtime.digest.params_digest` gives it from host arrays.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from runtime import digest as digest_lib


def _fmix32(h):
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _bits(x):
    width = jnp.dtype(x.dtype).itemsize
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[width]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _lanes(x):
    """[4] uint32 lane sums of x, elements numbered by their global C-order index."""
    index = jnp.zeros(x.shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(x.ndim)):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, x.shape, axis) * jnp.uint32(stride)
        stride *= x.shape[axis]
    bits = _bits(x)
    return jnp.stack([jnp.sum(_fmix32(bits ^ _fmix32(index + jnp.uint32(seed))), dtype=jnp.uint32)
                      for seed in digest_lib.LANE_SEEDS])


def digest_function(params_shardings, replicated):
    """A jitted params -> {leaf: lanes} for params laid out as `params_shardings`; outputs replicated (tiny)."""
    return jax.jit(lambda params: jax.tree.map(_lanes, params), in_shardings=(params_shardings,),
                   out_shardings=replicated)


def lanes_to_digest(params, lanes) -> str:
    """The record's digest from the params tree (abstract or concrete: shapes and dtypes) and their lanes."""
    shapes, dtypes, flat_lanes = {}, {}, {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        shapes[_name(path)] = tuple(leaf.shape)
        dtypes[_name(path)] = np.dtype(leaf.dtype).name
    for path, lane in jax.tree_util.tree_flatten_with_path(jax.device_get(lanes))[0]:
        flat_lanes[_name(path)] = np.asarray(lane)
    return digest_lib.lanes_sha256(flat_lanes, shapes, dtypes)


def _name(path) -> str:
    """'/'-joined keys, as runtime.digest.flatten_params names a leaf."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
