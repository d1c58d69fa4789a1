"""What GKE schedules for a run's mesh: node selectors, hosts, chips per host.

Why a table of GKE's shapes rather than `chips / compiler.hardware.chips_per_host`:
GKE does not cut every accelerator the way its datasheet suggests. A multi-host
TPU v5e or v6e slice is built from 4-chip VMs (ct5lp-hightpu-4t,
ct6e-standard-4t) although an 8-chip VM exists for the single-host 2x4 shape,
so a v5e-256 is 64 pods of 4 chips, not 32 of 8; v4 and v5p are named in three
dimensions (2x2x4) and a spec's "2x8" would match no node pool. The node
labels, machine types and shapes below are GKE's, with sources in
compiler/lower/CLUSTERS.md.

A spec without a topology gets one only when GKE offers exactly one shape with
that many chips, so the physical shape stays a function of the hashed spec;
when there is a choice the user must write it down.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from types import MappingProxyType

from compiler.problems import Problem, SpecError
from compiler.specset import CompiledRun

TPU_RESOURCE = "google.com/tpu"
GPU_RESOURCE = "nvidia.com/gpu"
TPU_ACCELERATOR_LABEL = "cloud.google.com/gke-tpu-accelerator"
TPU_TOPOLOGY_LABEL = "cloud.google.com/gke-tpu-topology"
GPU_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
CPU_RESOURCE = "cpu"
ARCH_LABEL = "kubernetes.io/arch"
CPU_MACHINE_TYPE = "any amd64 node pool"


@dataclasses.dataclass(frozen=True)
class Slice:
    """One GKE placement of a run: `hosts` pods of `chips_per_host` accelerators each."""

    accelerator: str  # runix name, e.g. tpu-v5e
    node_selector: tuple[tuple[str, str], ...]  # (label, value) pairs: hashable, copyable
    resource: str  # the extended resource each pod requests
    hosts: int
    chips_per_host: int
    machine_type: str  # machine type of the node pool the slice lands on

    @property
    def is_tpu(self) -> bool:
        return self.resource == TPU_RESOURCE

    @property
    def chips(self) -> int:
        return self.hosts * self.chips_per_host


@dataclasses.dataclass(frozen=True)
class _TpuFamily:
    label: str  # value of cloud.google.com/gke-tpu-accelerator
    single_host: Mapping[str, tuple[str, int]]  # topology → (machine type, chips of the one VM)
    multi_host_machine: str
    multi_host: tuple[str, ...]  # documented multi-host topologies
    chips_per_vm: int = 4  # chips of each VM of a multi-host slice
    sides_of_four: bool = False  # v5p: also every AxBxC (A ≤ B ≤ C) whose sides are multiples of 4

    def shapes(self, chips: int) -> list[str]:
        """Every topology this family offers with `chips` chips."""
        listed = [t for t in (*self.single_host, *self.multi_host) if _chips(t) == chips]
        if self.sides_of_four:
            listed += [t for t in _cuboids_of_fours(chips) if t not in listed]
        return listed

    def offers(self, topology: str) -> bool:
        if topology in self.single_host or topology in self.multi_host:
            return True
        sides = [int(s) for s in topology.split("x")]
        return self.sides_of_four and len(sides) == 3 and sides == sorted(sides) and all(s % 4 == 0 for s in sides)


_TWO_D_MULTI_HOST = ("4x4", "4x8", "8x8", "8x16", "16x16")

TPU_FAMILIES: Mapping[str, _TpuFamily] = MappingProxyType({
    "tpu-v5e": _TpuFamily(
        "tpu-v5-lite-podslice",
        {"1x1": ("ct5lp-hightpu-1t", 1), "2x2": ("ct5lp-hightpu-4t", 4), "2x4": ("ct5lp-hightpu-8t", 8)},
        "ct5lp-hightpu-4t", _TWO_D_MULTI_HOST),
    "tpu-v6e": _TpuFamily(
        "tpu-v6e-slice",
        {"1x1": ("ct6e-standard-1t", 1), "2x2": ("ct6e-standard-4t", 4), "2x4": ("ct6e-standard-8t", 8)},
        "ct6e-standard-4t", _TWO_D_MULTI_HOST),
    "tpu-v4": _TpuFamily(
        "tpu-v4-podslice", {"2x2x1": ("ct4p-hightpu-4t", 4)}, "ct4p-hightpu-4t",
        ("2x2x2", "2x2x4", "2x4x4", "4x4x4", "4x4x8", "4x8x8", "4x4x16", "8x8x8", "8x8x12", "8x8x16",
         "4x16x16", "8x16x16")),
    "tpu-v5p": _TpuFamily(
        "tpu-v5p-slice", {"2x2x1": ("ct5p-hightpu-4t", 4)}, "ct5p-hightpu-4t",
        ("2x2x2", "2x2x4", "2x4x4"), sides_of_four=True),
})


@dataclasses.dataclass(frozen=True)
class _GpuFamily:
    label: str  # value of cloud.google.com/gke-accelerator
    machine_type: str
    gpus_per_node: int = 8


GPU_FAMILIES: Mapping[str, _GpuFamily] = MappingProxyType({
    "gpu-h100": _GpuFamily("nvidia-h100-80gb", "a3-highgpu-8g"),
    "gpu-h200": _GpuFamily("nvidia-h200-141gb", "a3-ultragpu-8g"),
})


def gke_slice(run: CompiledRun, cpu_hosts: int = 1) -> Slice:
    """The GKE placement of `run`'s mesh; a SpecError names the mesh field GKE cannot place.

    cpu_hosts: pods a cpu mesh is split over (its faked devices divided
    evenly). Not part of the hash: on cpu the runtime's fixed-order gradient
    reduction gives the same bits for any split of the devices over
    processes (runtime.numerics.gradient_reduction), so this is placement,
    like a TPU run's machine type.
    """
    accelerator = run.spec.mesh.accelerator
    if accelerator in TPU_FAMILIES:
        return _tpu_slice(run, TPU_FAMILIES[accelerator])
    if accelerator in GPU_FAMILIES:
        return _gpu_slice(run, GPU_FAMILIES[accelerator])
    if accelerator == "cpu":
        return _cpu_slice(run, cpu_hosts)
    raise _problem(run, "accelerator", f"GKE cannot place {accelerator}; a cluster runs "
                                       f"{', '.join([*TPU_FAMILIES, *GPU_FAMILIES, 'cpu'])}")


def _cpu_slice(run: CompiledRun, hosts: int) -> Slice:
    """A cpu mesh on a CPU node pool: `hosts` pods, each faking chips / hosts XLA devices."""
    chips = run.spec.mesh.chips
    if hosts < 1 or chips % hosts:
        raise _problem(run, "chips", f"{chips} cpu devices cannot be split evenly over {hosts} hosts (--cpu-hosts)")
    return Slice("cpu", ((ARCH_LABEL, "amd64"),), CPU_RESOURCE, hosts, chips // hosts, CPU_MACHINE_TYPE)


def _tpu_slice(run: CompiledRun, family: _TpuFamily) -> Slice:
    mesh = run.spec.mesh
    topology = mesh.topology
    if topology is None:
        shapes = family.shapes(mesh.chips)
        if len(shapes) != 1:
            offered = ", ".join(shapes) if shapes else _offered(family)
            reason = "GKE offers several shapes" if shapes else "GKE offers no slice with that many chips"
            raise _problem(run, "topology", f"{mesh.accelerator} with {mesh.chips} chips needs a topology: "
                                            f"{reason} ({offered})")
        topology = shapes[0]
    elif not family.offers(topology):
        raise _problem(run, "topology", f"GKE has no {mesh.accelerator} slice {topology}; it offers {_offered(family)}")
    selector = ((TPU_ACCELERATOR_LABEL, family.label), (TPU_TOPOLOGY_LABEL, topology))
    if topology in family.single_host:
        machine, chips = family.single_host[topology]
        return Slice(mesh.accelerator, selector, TPU_RESOURCE, 1, chips, machine)
    return Slice(mesh.accelerator, selector, TPU_RESOURCE, mesh.chips // family.chips_per_vm, family.chips_per_vm,
                 family.multi_host_machine)


def _gpu_slice(run: CompiledRun, family: _GpuFamily) -> Slice:
    chips = run.spec.mesh.chips
    per_node = family.gpus_per_node
    if chips > per_node and chips % per_node:
        raise _problem(run, "chips", f"{chips} GPUs do not fill whole {per_node}-GPU nodes; "
                                     f"use up to {per_node} or a multiple of {per_node}")
    selector = ((GPU_ACCELERATOR_LABEL, family.label),)
    hosts = max(1, chips // per_node)
    return Slice(run.spec.mesh.accelerator, selector, GPU_RESOURCE, hosts, chips // hosts, family.machine_type)


def _chips(topology: str) -> int:
    return math.prod(int(side) for side in topology.split("x"))


def _cuboids_of_fours(chips: int) -> list[str]:
    """AxBxC with A ≤ B ≤ C, every side a multiple of 4, A·B·C = chips."""
    found = []
    for a in range(4, round(chips ** (1 / 3)) + 5, 4):
        for b in range(a, math.isqrt(chips // a) + 5, 4):
            c, rest = divmod(chips, a * b)
            if not rest and c >= b and c % 4 == 0:
                found.append(f"{a}x{b}x{c}")
    return found


def _offered(family: _TpuFamily) -> str:
    shapes = ", ".join((*family.single_host, *family.multi_host))
    return shapes + (", or AxBxC with sides multiples of 4" if family.sides_of_four else "")


def _problem(run: CompiledRun, field: str, message: str) -> SpecError:
    return SpecError([Problem(run.location, f"runs[{run.name}].mesh.{field}", message)])
