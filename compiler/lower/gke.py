"""`GkeJobSet`: an XManager executor whose launch renders a run's JobSet manifest.

Why runix brings its own executor: the installed xmanager (0.8.5) cannot say
what GKE needs for these runs. `xm_local.Kubernetes` creates one batch/v1 Job
(no JobSet, `replicas` ignored), sets only the legacy
`tf-version.cloud-tpus.google.com` annotation for TPUs (no TPU node selectors,
no `google.com/tpu` limits), and selects GPUs as `nvidia-tesla-<type>`, which
for H100 gives `nvidia-tesla-h100` where GKE's label is `nvidia-h100-80gb`
(xmanager/cloud/kubernetes.py). XManager's executor registry is the documented
way out: an Executor class plus a launch coroutine registered with
`xmanager.xm_local.registry.register`.

Launching renders, it does not apply: each job becomes
`<manifest_dir>/<run hash>.yaml` (a local folder or a bucket URL, through
fsspec), written atomically (temp + rename locally, one PUT on a bucket).
Rewriting the same run gives the same bytes, so a relaunch changes nothing, as
Nix leaves a built path alone. Applying needs a cluster, credentials and the JobSet controller: the
launcher does that with kubectl after rendering (compiler/lower/kubectl.py);
an executor with `apply=True` writes the file and then refuses, saying so.

Nothing here runs at import: `register()` is called by the launcher.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Sequence
from typing import Any

import attr
from xmanager import xm
from xmanager.xm import job_operators
from xmanager.xm import utils as xm_utils
from xmanager.xm_local import executables, registry

from compiler.lower.jobset import DEFAULT_MAX_RESTARTS, render_jobset, to_yaml
from compiler.lower.slices import Slice


class ApplyUnavailable(RuntimeError):
    """Raised when a launch asks runix to apply a manifest to a cluster, which it does not do."""


@attr.s(auto_attribs=True, frozen=True)
class GkeJobSetSpec(xm.ExecutorSpec):
    """Nothing to package: a cluster job runs an image that is already in a registry."""


@attr.s(auto_attribs=True, frozen=True)
class GkeJobSet(xm.Executor):
    """Where a run goes on GKE: its slice, and the directory its manifest is rendered to."""

    run_hash: str
    run_name: str
    parent_hash: str | None
    placement: Slice
    manifest_dir: str
    namespace: str = "default"
    apply: bool = False
    max_restarts: int = DEFAULT_MAX_RESTARTS
    parent_wait: tuple[str, ...] | None = None  # argv of the init container that waits for the parent's entry
    shared_volume: str | None = None  # PersistentVolumeClaim the pods of a multi-host build share (CLUSTERS.md)

    Spec = GkeJobSetSpec  # pylint: disable=invalid-name

    @classmethod
    async def launch(cls, local_experiment_unit: Any, job_group: xm.JobGroup) -> Sequence[Any]:
        return await registry.get_launch_method(cls)(local_experiment_unit, job_group)


def register() -> None:
    """Teach xm_local (and any experiment that asks the registry) to launch GkeJobSet jobs."""
    registry.register(GkeJobSet, launch=launch_jobsets)


def manifest_path(manifest_dir: str | os.PathLike[str], run_hash: str) -> pathlib.Path:
    """Where the launch writes a run's manifest, for a local folder."""
    return pathlib.Path(manifest_dir) / f"{run_hash}.yaml"


def manifest_url(manifest_dir: str, run_hash: str) -> str:
    """Where the launch writes a run's manifest: a local path, or a URL inside a bucket folder."""
    if "://" not in str(manifest_dir):
        return str(manifest_path(manifest_dir, run_hash))
    return f"{str(manifest_dir).rstrip('/')}/{run_hash}.yaml"


def render_job(job: xm.Job) -> str:
    """The YAML of one GkeJobSet job: its image and argv, the executor's slice."""
    executor = job.executor
    executable = job.executable
    if not isinstance(executor, GkeJobSet):
        raise TypeError(f"expected a GkeJobSet job, got {type(executor).__name__}")
    if not isinstance(executable, executables.GoogleContainerRegistryImage):
        raise TypeError(f"a GKE job runs a registry image (GoogleContainerRegistryImage), got {type(executable).__name__}")
    argv = xm.merge_args(executable.args, job.args).to_list(xm_utils.ARGV_ESCAPER)
    manifest = render_jobset(
        run_hash=executor.run_hash, run_name=executor.run_name, parent_hash=executor.parent_hash,
        placement=executor.placement, image=executable.image_path, argv=argv,
        env={**executable.env_vars, **job.env_vars}, namespace=executor.namespace,
        max_restarts=executor.max_restarts, parent_wait=executor.parent_wait, shared_volume=executor.shared_volume)
    return to_yaml(manifest)


async def launch_jobsets(local_experiment_unit: Any, job_group: xm.JobGroup) -> list[Any]:
    """Render every GkeJobSet job of the group; refuse afterwards if one asked to be applied.

    Returns no execution handles: nothing runs, so there is nothing to wait on.
    """
    del local_experiment_unit  # manifests are named by run hash, not by experiment
    jobs = job_operators.collect_jobs_by_filter(job_group, lambda job: isinstance(job.executor, GkeJobSet))
    written = [write_text(manifest_url(job.executor.manifest_dir, job.executor.run_hash), render_job(job))
               for job in jobs]
    to_apply = [path for job, path in zip(jobs, written) if job.executor.apply]
    if to_apply:
        files = " ".join(str(path) for path in to_apply)
        raise ApplyUnavailable(
            "runix renders JobSet manifests but does not apply them: applying needs a GKE cluster with the "
            f"JobSet controller and your credentials. The manifests are written; apply them with: kubectl apply -f {files}")
    return []


def write_text(url: str, text: str) -> str:
    """Write `text` to a local path (atomically) or a bucket URL (one PUT); returns the URL."""
    if "://" not in url or url.startswith("file://"):
        return str(_write(pathlib.Path(url.removeprefix("file://")), text))
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    fs.pipe_file(path, text.encode("utf-8"))
    return url


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
    """Write `text` to `path` atomically (temp file + rename); leave an identical file alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_text() == text:
        return path
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        pathlib.Path(temp).unlink(missing_ok=True)
        raise
    return path
