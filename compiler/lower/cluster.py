"""Runs → XManager jobs for a cluster: what `runix launch --target gke` calls.

Each pod runs the same build job as the local executor
(`compiler.lower.local.build_command`: `python -m runtime.build --store URL --hash HASH`),
which finds the run and its parents in the store itself; so the cluster needs
the store as a URL its pods can read, and nothing from this machine.

The launcher calls `gke.register()` once, then `cluster_jobs(...)` and adds each
job with `experiment.add(job, identity=run_hash)`. Lowering happens before
anything is added, for every run, and every problem is reported at once, so a
bad mesh in run 40 does not leave 39 manifests behind.

Identity is the run hash. Two runs that differ only in name have one hash and
train the same bits, so they lower to one job (the first name, in dependency
order). No executor here enforces `identity` (xm_local only logs that it does
not support it), which is why `cluster_jobs` does.

Targets. `gke` renders a JobSet per run for TPU, GPU and cpu meshes (cpu node
pools: the cluster path testable without accelerators; compiler/lower/gke.py).
`vertex` is refused with the reason: the installed xmanager's Vertex executor
maps only TPU v2/v3 (a KeyError for v4, v5e, v5p, v6e) and puts H100/H200 on an
n1-standard-4 machine, which Vertex does not offer them on
(xmanager/cloud/vertex.py: `_CLOUD_TPU_ACCELERATOR_TYPES`, `get_machine_spec`).
See compiler/lower/CLUSTERS.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from xmanager import xm
from xmanager.xm_local import executables

from compiler.lower.gke import GkeJobSet
from compiler.lower.jobset import DEFAULT_MAX_RESTARTS, jobset_name
from compiler.lower.local import build_command, wait_command
from compiler.lower.slices import gke_slice
from compiler.problems import Location, Problem, SpecError
from compiler.specset import CompiledRun

TARGETS = ("gke", "vertex")
LOCAL_SCHEMES = ("", "file", "local", "memory")
"""Store URL schemes a pod cannot read: the launcher's own disk or memory."""


def cluster_job(run: CompiledRun, store_url: str, image: str, target: str, *, manifest_dir: str,
                namespace: str = "default", apply: bool = False, max_restarts: int = DEFAULT_MAX_RESTARTS,
                cpu_hosts: int = 1, shared_volume: str | None = None) -> xm.Job:
    """One run as an XManager job for `target`; SpecError names what cannot be placed."""
    placement = gke_slice(run, cpu_hosts)
    _check_target(run, target)
    _check_store(store_url)
    _check_shared_volume(run, placement.hosts, shared_volume)
    parent_wait = None if run.parent_hash is None else ("python", *wait_command(store_url, run.parent_hash))
    executor = GkeJobSet(run_hash=run.hash, run_name=run.name, parent_hash=run.parent_hash, placement=placement,
                         manifest_dir=str(manifest_dir), namespace=namespace, apply=apply,
                         max_restarts=max_restarts, parent_wait=parent_wait, shared_volume=shared_volume)
    return xm.Job(
        executable=executables.GoogleContainerRegistryImage(name=run.name, image_path=image),
        executor=executor,
        name=jobset_name(run.hash),
        args=["python", *build_command(store_url, run.hash)],
    )


def cluster_jobs(runs: Iterable[CompiledRun], store_url: str, image: str, target: str, *, manifest_dir: str,
                 namespace: str = "default", apply: bool = False, max_restarts: int = DEFAULT_MAX_RESTARTS,
                 cpu_hosts: int = 1, shared_volume: str | None = None) -> dict[str, xm.Job]:
    """Every run lowered, keyed by run hash (the identity to add it under), in the given order.

    Raises one SpecError with the problems of every run.
    """
    jobs: dict[str, xm.Job] = {}
    problems: list[Problem] = []
    for run in runs:
        if run.hash in jobs:
            continue
        try:
            jobs[run.hash] = cluster_job(run, store_url, image, target, manifest_dir=manifest_dir,
                                         namespace=namespace, apply=apply, max_restarts=max_restarts,
                                         cpu_hosts=cpu_hosts, shared_volume=shared_volume)
        except SpecError as err:
            problems.extend(err.problems)
    if problems:
        raise SpecError(problems)
    return jobs


def _check_shared_volume(run: CompiledRun, hosts: int, shared_volume: str | None) -> None:
    """A build of several hosts needs one build folder they all see: orbax writes one checkpoint from every host.

    Its process 0 commits each step by renaming the step's folder once every
    host's shards are in it, so hosts with separate disks would never form a
    checkpoint. On an object store the pods share nothing else (s3: orbax
    cannot write there at all), so the manifest must mount a shared volume.
    """
    if hosts > 1 and not shared_volume:
        raise SpecError([Problem(run.location, f"runs[{run.name}].mesh",
                                 f"a {hosts}-host build needs a volume its pods share for its build folder (orbax "
                                 f"commits a checkpoint only once every host's shards are in one folder); pass "
                                 f"--shared-volume CLAIM, a ReadWriteMany PersistentVolumeClaim such as a Filestore "
                                 f"one (compiler/lower/CLUSTERS.md)")])


def _check_target(run: CompiledRun, target: str) -> None:
    if target == "gke":
        return
    if target == "vertex":
        accelerator = run.spec.mesh.accelerator
        why = ("maps only TPU v2/v3 to Vertex accelerators (KeyError for this TPU)" if accelerator.startswith("tpu")
               else "asks Vertex for this GPU on an n1-standard-4 machine, which Vertex rejects")
        raise SpecError([Problem(run.location, f"runs[{run.name}].mesh.accelerator",
                                 f"target vertex: xmanager 0.8.5's Vertex executor {why}; use target gke "
                                 f"(compiler/lower/CLUSTERS.md)")])
    raise SpecError([Problem(Location(""), "--target", f"unknown cluster target {target!r}; choose one of {', '.join(TARGETS)}")])


def _check_store(store_url: str) -> None:
    scheme = store_url.split("://", 1)[0] if "://" in store_url else ""
    if scheme in LOCAL_SCHEMES:
        raise SpecError([Problem(Location(""), "--store",
                                 f"{store_url!r} is on this machine, which cluster pods cannot read; "
                                 f"use a bucket URL such as gs://BUCKET/runix")])
