"""Evals lowered to cluster jobs of their own: one per run, on the run's slice, waiting for the run."""

from __future__ import annotations

import pytest
import yaml

from compiler.evals import derivations
from compiler.lower.eval_jobs import cluster_eval_jobs, eval_job_hash
from compiler.lower.gke import render_job
from compiler.problems import SpecError
from compiler.specset import load_spec_set
from tests.lower.conftest import CLUSTER_RUNS

STORE = "gs://bucket/runix"
IMAGE = "us-docker.pkg.dev/project/runix/runtime@sha256:0123"
EVALS = """\
    evals:
      sets:
        code: {kind: heldout, uri: "builtin://code"}
"""


@pytest.fixture
def runs(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("runs:\n" + CLUSTER_RUNS.replace("    abstract: true\n", "    abstract: true\n" + EVALS, 1))
    return load_spec_set([path]).by_name()


def evals_of(run):
    return derivations(run, lambda uri: "a" * 64, "b" * 64)


def test_one_eval_job_per_run_on_its_slice_running_the_evaluator(runs):
    run = runs["v5e-host"]
    jobs = cluster_eval_jobs([run], {run.hash: evals_of(run)}, STORE, IMAGE, manifest_dir="out")
    [(job_hash, job)] = jobs.items()
    assert job_hash == eval_job_hash(evals_of(run))
    manifest = yaml.safe_load(render_job(job))
    container = manifest["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0]
    [derivation] = evals_of(run)
    assert container["command"] == ["python", "-m", "runtime.evaluate", "--store", STORE, "--wait-for-run", "604800",
                                    "--hash", derivation.hash]
    assert container["resources"]["limits"] == {"google.com/tpu": "8"}
    assert manifest["metadata"]["annotations"]["runix/parent-hash"] == run.hash


def test_a_multi_host_run_is_refused_with_its_field_path(runs):
    run = runs["v5e-pod"]
    with pytest.raises(SpecError) as info:
        cluster_eval_jobs([run], {run.hash: evals_of(run)}, STORE, IMAGE, manifest_dir="out")
    (problem,) = info.value.problems
    assert problem.path == "runs[v5e-pod].evals" and "64 hosts" in problem.message


def test_a_store_pods_cannot_read_is_refused(runs):
    run = runs["v5e-host"]
    with pytest.raises(SpecError, match="cluster pods cannot read"):
        cluster_eval_jobs([run], {run.hash: evals_of(run)}, "/tmp/store", IMAGE, manifest_dir="out")
