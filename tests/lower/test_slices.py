"""GKE placement of meshes: node selectors, hosts and chips per host, and the meshes GKE cannot place."""

from __future__ import annotations

import pytest

from compiler.lower.slices import GPU_RESOURCE, TPU_RESOURCE, gke_slice
from compiler.problems import SpecError


def run_with(compile_runs, mesh: str, name: str = "r"):
    return compile_runs(f"  - name: {name}\n    extends: base\n    mesh: {mesh}\n")[name]


def selector(placement) -> dict:
    return dict(placement.node_selector)


def test_v5e_256_is_64_pods_of_4_chips(compile_runs):
    # No topology written: GKE offers exactly one 256-chip v5e shape, so it is filled in.
    placement = gke_slice(run_with(compile_runs, "{accelerator: tpu-v5e, chips: 256, axes: {fsdp: 256}}"))
    assert selector(placement) == {"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
                                   "cloud.google.com/gke-tpu-topology": "16x16"}
    assert (placement.hosts, placement.chips_per_host, placement.resource) == (64, 4, TPU_RESOURCE)
    assert placement.machine_type == "ct5lp-hightpu-4t"


def test_v5e_2x4_is_one_host_of_8_chips(compile_runs):
    placement = gke_slice(run_with(compile_runs, "{accelerator: tpu-v5e, chips: 8, topology: 2x4, axes: {fsdp: 8}}"))
    assert selector(placement)["cloud.google.com/gke-tpu-topology"] == "2x4"
    assert (placement.hosts, placement.chips_per_host, placement.machine_type) == (1, 8, "ct5lp-hightpu-8t")


@pytest.mark.parametrize("mesh, label, topology, hosts, per_host", [
    ("{accelerator: tpu-v4, chips: 16, topology: 2x2x4, axes: {fsdp: 16}}", "tpu-v4-podslice", "2x2x4", 4, 4),
    ("{accelerator: tpu-v4, chips: 4, axes: {fsdp: 4}}", "tpu-v4-podslice", "2x2x1", 1, 4),
    ("{accelerator: tpu-v5p, chips: 256, topology: 4x4x16, axes: {fsdp: 256}}", "tpu-v5p-slice", "4x4x16", 64, 4),
    ("{accelerator: tpu-v5p, chips: 64, axes: {fsdp: 64}}", "tpu-v5p-slice", "4x4x4", 16, 4),
    ("{accelerator: tpu-v6e, chips: 16, topology: 4x4, axes: {fsdp: 16}}", "tpu-v6e-slice", "4x4", 4, 4),
])
def test_tpu_families(compile_runs, mesh, label, topology, hosts, per_host):
    placement = gke_slice(run_with(compile_runs, mesh))
    assert selector(placement) == {"cloud.google.com/gke-tpu-accelerator": label,
                                   "cloud.google.com/gke-tpu-topology": topology}
    assert (placement.hosts, placement.chips_per_host) == (hosts, per_host)


@pytest.mark.parametrize("mesh, label, hosts, per_host", [
    ("{accelerator: gpu-h100, chips: 16, axes: {fsdp: 16}}", "nvidia-h100-80gb", 2, 8),
    ("{accelerator: gpu-h100, chips: 4, axes: {fsdp: 4}}", "nvidia-h100-80gb", 1, 4),
    ("{accelerator: gpu-h200, chips: 8, axes: {fsdp: 8}}", "nvidia-h200-141gb", 1, 8),
])
def test_gpu_nodes(compile_runs, mesh, label, hosts, per_host):
    placement = gke_slice(run_with(compile_runs, mesh))
    assert selector(placement) == {"cloud.google.com/gke-accelerator": label}
    assert (placement.hosts, placement.chips_per_host, placement.resource) == (hosts, per_host, GPU_RESOURCE)


@pytest.mark.parametrize("mesh, field, words", [
    # v4 is named in three dimensions on GKE; a 2D name matches no node pool.
    ("{accelerator: tpu-v4, chips: 16, topology: 4x4, axes: {fsdp: 16}}", "topology", "no tpu-v4 slice 4x4"),
    # Two 256-chip v4 shapes exist: which one changes the ICI layout, so the spec must say.
    ("{accelerator: tpu-v4, chips: 256, axes: {fsdp: 256}}", "topology", "4x8x8, 4x4x16"),
    ("{accelerator: tpu-v5p, chips: 256, axes: {fsdp: 256}}", "topology", "several shapes"),
    ("{accelerator: tpu-v5e, chips: 12, topology: 3x4, axes: {tensor: 12}}", "topology", "no tpu-v5e slice 3x4"),
    ("{accelerator: tpu-v5e, chips: 2, axes: {fsdp: 2}}", "topology", "no slice with that many chips"),
    ("{accelerator: gpu-h100, chips: 12, axes: {tensor: 12}}", "chips", "whole 8-GPU nodes"),
    # A cpu mesh goes to a CPU node pool, its devices split evenly over --cpu-hosts pods.
    ("{accelerator: cpu, chips: 2, axes: {fsdp: 2}}", "chips", "cannot be split evenly over 4 hosts"),
])
def test_meshes_gke_cannot_place_name_the_field(compile_runs, mesh, field, words):
    run = run_with(compile_runs, mesh)
    with pytest.raises(SpecError) as caught:
        gke_slice(run, cpu_hosts=4)
    [problem] = caught.value.problems
    assert problem.path == f"runs[r].mesh.{field}"
    assert problem.location == run.location
    assert words in problem.message


def test_a_cpu_mesh_is_placed_on_cpu_nodes_split_over_hosts(compile_runs):
    run = run_with(compile_runs, "{accelerator: cpu, chips: 4, axes: {data: 2, fsdp: 2}}")
    one, two = gke_slice(run), gke_slice(run, cpu_hosts=2)
    assert (one.hosts, one.chips_per_host, one.resource) == (1, 4, "cpu")
    assert (two.hosts, two.chips_per_host) == (2, 2) and not two.is_tpu
    assert dict(two.node_selector) == {"kubernetes.io/arch": "amd64"}
