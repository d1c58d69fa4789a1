"""Compute kernels of the runtime, each beside the plain-jnp reference it is tested against.

Modules are imported by name (`kernels.cross_entropy`, `kernels.attention`, ...);
this package file imports nothing, so `kernels.footprint` stays importable by the
compiler, which must never import jax.
"""
