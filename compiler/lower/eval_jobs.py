"""Evals → XManager jobs for a cluster: one job per run, after the run, on the run's own accelerator.

Each job runs `python -m runtime.evaluate --store URL --wait-for-run S --hash H ...`
(compiler.eval_launch.evaluate_command), every eval of that run: the job
waits until the run is built in the store (a cluster starts both jobs at
once; the eval job is cheap to hold), then builds the evals that are missing
and skips the built ones, like a run's build job. The job is named by a
hash of its eval hashes, so the same evals render the same manifest.

Placement: the run's slice (compiler.lower.slices.gke_slice), because the
checkpoint is laid out for that mesh. runtime.evaluate runs one process, so
a run on a multi-host slice is refused with the reason rather than rendered
into a job that cannot start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from xmanager import xm
from xmanager.xm_local import executables

from compiler.eval_launch import evaluate_command
from compiler.evals import EvalDerivation
from compiler.lower.cluster import _check_store
from compiler.lower.gke import GkeJobSet
from compiler.lower.jobset import jobset_name
from compiler.lower.slices import gke_slice
from compiler.problems import Problem, SpecError
from compiler.specset import CompiledRun

WAIT_FOR_RUN_S = 7 * 24 * 3600
"""How long an eval job waits for its run's build (a week: longer than any run here)."""


def eval_job_hash(derivations: Sequence[EvalDerivation]) -> str:
    """The identity of one run's eval job: sha256 of its sorted eval hashes."""
    return hashlib.sha256("\n".join(sorted(d.hash for d in derivations)).encode()).hexdigest()


def cluster_eval_jobs(runs: Iterable[CompiledRun], evals: Mapping[str, Sequence[EvalDerivation]], store_url: str,
                      image: str, *, manifest_dir: str, namespace: str = "default") -> dict[str, xm.Job]:
    """One job per run that has evals, keyed by the job's hash; SpecError names every run that cannot be placed."""
    _check_store(store_url)
    jobs: dict[str, xm.Job] = {}
    problems: list[Problem] = []
    for run in runs:
        derivations = evals.get(run.hash) or ()
        if not derivations:
            continue
        try:
            placement = gke_slice(run)
        except SpecError as err:
            problems.extend(err.problems)
            continue
        if placement.hosts > 1:
            problems.append(Problem(run.location, f"runs[{run.name}].evals",
                                    f"the run spans {placement.hosts} hosts, but an eval job runs one process "
                                    "(runtime.evaluate); evaluate it with `runix eval` where one host can load it"))
            continue
        job_hash = eval_job_hash(derivations)
        command = evaluate_command(store_url, [d.hash for d in derivations])
        command[command.index("--store") + 2:command.index("--store") + 2] = ["--wait-for-run", str(WAIT_FOR_RUN_S)]
        executor = GkeJobSet(run_hash=job_hash, run_name=f"{run.name}.evals", parent_hash=run.hash,
                             placement=placement, manifest_dir=str(manifest_dir), namespace=namespace)
        jobs[job_hash] = xm.Job(
            executable=executables.GoogleContainerRegistryImage(name=f"{run.name}-evals", image_path=image),
            executor=executor, name=jobset_name(job_hash), args=["python", *command])
    if problems:
        raise SpecError(problems)
    return jobs
