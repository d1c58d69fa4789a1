"""Lowering runs to GKE JobSets through XManager: the manifests a recording experiment renders."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
import yaml
from xmanager import xm

from compiler.lower import gke
from compiler.lower.cluster import cluster_job, cluster_jobs
from compiler.lower.local import build_command
from compiler.problems import SpecError
from compiler.specset import load_spec_set
from tests.lower.conftest import CLUSTER_RUNS, RecordingExperiment

STORE = "gs://bucket/runix"
CLAIM = "runix-builds"  # a ReadWriteMany claim the multi-host runs' pods share
IMAGE = "us-docker.pkg.dev/project/runix/runtime@sha256:0123"
COMPLETION_INDEX = {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}


@pytest.fixture
def runs(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("runs:\n" + CLUSTER_RUNS)
    return load_spec_set([path]).runs


@pytest.fixture
def launched(runs, tmp_path):
    """Lower the cluster runs and add each under its hash to a recording experiment; returns (experiment, jobs, dir)."""
    gke.register()
    out = tmp_path / "manifests"
    jobs = cluster_jobs(runs, STORE, IMAGE, "gke", manifest_dir=str(out), shared_volume=CLAIM)
    with RecordingExperiment() as experiment:
        for run_hash, job in jobs.items():
            experiment.add(job, identity=run_hash)
    return experiment, jobs, out


def manifest(out, run) -> dict:
    return yaml.safe_load(gke.manifest_path(out, run.hash).read_text())


def pod_of(document: dict) -> dict:
    [replicated] = document["spec"]["replicatedJobs"]
    return replicated["template"]["spec"]["template"]["spec"]


def job_of(document: dict) -> dict:
    [replicated] = document["spec"]["replicatedJobs"]
    return replicated["template"]["spec"]


def env_of(document: dict) -> dict:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in pod_of(document)["containers"][0]["env"]}


def test_each_run_added_once_under_its_hash_and_rendered_to_a_file_named_by_it(runs, launched):
    experiment, jobs, out = launched
    assert experiment.identities == [run.hash for run in runs]  # parents first, as the spec set orders them
    assert len(experiment.launched_jobs) == len(runs)
    assert sorted(path.name for path in out.iterdir()) == sorted(f"{run.hash}.yaml" for run in runs)


def test_v5e_256_chips_is_a_64_pod_jobset(runs, launched):
    _, _, out = launched
    run = next(run for run in runs if run.name == "v5e-pod")
    document = manifest(out, run)
    name = f"runix-{run.hash[:12]}"
    assert (document["apiVersion"], document["kind"], document["metadata"]["name"]) == ("jobset.x-k8s.io/v1alpha2", "JobSet", name)
    assert document["metadata"]["labels"]["runix/hash"] == run.hash[:12]
    assert document["metadata"]["annotations"]["runix/run-hash"] == run.hash
    assert document["spec"]["network"]["enableDNSHostnames"] is True
    job, pod = job_of(document), pod_of(document)
    assert (job["parallelism"], job["completions"], job["completionMode"]) == (64, 64, "Indexed")
    assert pod["nodeSelector"] == {"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
                                   "cloud.google.com/gke-tpu-topology": "16x16"}
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"google.com/tpu": "4"}
    assert container["image"] == IMAGE
    # The same build job as the local executor, so a run is built alike wherever it lands.
    assert container["command"] == ["python", *build_command(STORE, run.hash)]
    assert container["command"][-2:] == ["--hash", run.hash]
    env = env_of(document)
    hosts = env["TPU_WORKER_HOSTNAMES"].split(",")
    assert hosts == [f"{name}-slice-0-{rank}.{name}" for rank in range(64)]
    assert env["JAX_COORDINATOR_ADDRESS"] == f"{hosts[0]}:8482"
    assert env["TPU_WORKER_ID"] == env["RUNIX_PROCESS_ID"] == COMPLETION_INDEX
    assert env["RUNIX_NUM_PROCESSES"] == "64"


def test_v5e_2x4_is_one_pod_with_all_8_chips(runs, launched):
    _, _, out = launched
    document = manifest(out, next(run for run in runs if run.name == "v5e-host"))
    assert (job_of(document)["parallelism"], job_of(document)["completions"]) == (1, 1)
    assert pod_of(document)["nodeSelector"]["cloud.google.com/gke-tpu-topology"] == "2x4"
    assert pod_of(document)["containers"][0]["resources"]["limits"] == {"google.com/tpu": "8"}
    assert env_of(document)["RUNIX_NUM_PROCESSES"] == "1"


def test_v4_child_names_its_parent_for_whoever_applies_the_files(runs, launched):
    _, _, out = launched
    by_name = {run.name: run for run in runs}
    child, parent = by_name["v4-child"], by_name["v5e-host"]
    document = manifest(out, child)
    assert document["metadata"]["annotations"]["runix/parent-hash"] == parent.hash
    assert pod_of(document)["nodeSelector"] == {"cloud.google.com/gke-tpu-accelerator": "tpu-v4-podslice",
                                                "cloud.google.com/gke-tpu-topology": "2x2x4"}
    assert job_of(document)["parallelism"] == 4
    assert pod_of(document)["containers"][0]["resources"]["limits"] == {"google.com/tpu": "4"}
    assert pod_of(document)["containers"][0]["command"][-2:] == ["--hash", child.hash]  # the build job finds the parent
    assert len(env_of(document)["TPU_WORKER_HOSTNAMES"].split(",")) == 4


def test_h100_run_is_two_8_gpu_pods_without_tpu_settings(runs, launched):
    _, _, out = launched
    document = manifest(out, next(run for run in runs if run.name == "h100"))
    pod = pod_of(document)
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert job_of(document)["parallelism"] == 2
    env = env_of(document)
    assert "TPU_WORKER_HOSTNAMES" not in env and "TPU_WORKER_ID" not in env
    assert env["JAX_COORDINATOR_ADDRESS"].endswith("-slice-0-0." + document["metadata"]["name"] + ":8482")
    assert env["RUNIX_NUM_PROCESSES"] == "2"
    assert "alpha.jobset.sigs.k8s.io/exclusive-topology" not in document["metadata"]["annotations"]


def test_runs_differing_only_in_name_are_one_job(compile_runs, tmp_path):
    runs = compile_runs(
        "  - name: first\n    extends: base\n    mesh: {accelerator: tpu-v5e, chips: 8, axes: {fsdp: 8}}\n"
        "  - name: second\n    extends: first\n")
    assert runs["first"].hash == runs["second"].hash
    jobs = cluster_jobs([runs["first"], runs["second"], runs["first"]], STORE, IMAGE, "gke", manifest_dir=str(tmp_path), shared_volume=CLAIM)
    assert list(jobs) == [runs["first"].hash]
    assert jobs[runs["first"].hash].executor.run_name == "first"


def test_relaunch_leaves_the_rendered_file_as_it_is(runs, tmp_path):
    out = tmp_path / "manifests"
    path = gke.manifest_path(out, runs[0].hash)
    asyncio.run(gke.launch_jobsets(None, xm.JobGroup(only=cluster_job(runs[0], STORE, IMAGE, "gke", manifest_dir=str(out), shared_volume=CLAIM))))
    first, stamp = path.read_bytes(), path.stat().st_mtime_ns
    asyncio.run(gke.launch_jobsets(None, xm.JobGroup(only=cluster_job(runs[0], STORE, IMAGE, "gke", manifest_dir=str(out), shared_volume=CLAIM))))
    assert (path.read_bytes(), path.stat().st_mtime_ns) == (first, stamp)
    assert [p.name for p in out.iterdir()] == [path.name]  # no temp files left


def test_apply_renders_then_refuses_with_the_kubectl_command(runs, tmp_path):
    job = cluster_job(runs[0], STORE, IMAGE, "gke", manifest_dir=str(tmp_path), shared_volume=CLAIM, apply=True)
    with pytest.raises(gke.ApplyUnavailable, match="kubectl apply -f .*yaml"):
        asyncio.run(gke.launch_jobsets(None, xm.JobGroup(only=job)))
    assert gke.manifest_path(tmp_path, runs[0].hash).is_file()


def test_vertex_is_refused_with_the_reason(runs, tmp_path):
    tpu = next(run for run in runs if run.name == "v5e-host")
    gpu = next(run for run in runs if run.name == "h100")
    with pytest.raises(SpecError, match="maps only TPU v2/v3"):
        cluster_job(tpu, STORE, IMAGE, "vertex", manifest_dir=str(tmp_path), shared_volume=CLAIM)
    with pytest.raises(SpecError, match="n1-standard-4") as caught:
        cluster_job(gpu, STORE, IMAGE, "vertex", manifest_dir=str(tmp_path), shared_volume=CLAIM)
    assert caught.value.problems[0].path == "runs[h100].mesh.accelerator"


@pytest.mark.parametrize("store", ["/tmp/store", "file:///tmp/store", "memory://store"])
def test_a_store_on_this_machine_is_refused(runs, tmp_path, store):
    with pytest.raises(SpecError, match="cluster pods cannot read") as caught:
        cluster_job(runs[0], store, IMAGE, "gke", manifest_dir=str(tmp_path), shared_volume=CLAIM)
    assert caught.value.problems[0].path == "--store"


def test_every_problem_is_reported_before_anything_is_rendered(compile_runs, tmp_path):
    runs = compile_runs(
        "  - name: laptop\n    extends: base\n    mesh: {accelerator: cpu, chips: 2, axes: {fsdp: 2}}\n"
        "  - name: flat-v4\n    extends: base\n    mesh: {accelerator: tpu-v4, chips: 16, topology: 4x4, axes: {fsdp: 16}}\n"
        "  - name: fine\n    extends: base\n    mesh: {accelerator: tpu-v5e, chips: 8, axes: {fsdp: 8}}\n")
    with pytest.raises(SpecError) as caught:
        cluster_jobs(runs.values(), STORE, IMAGE, "gke", manifest_dir=str(tmp_path / "out"), shared_volume=CLAIM, cpu_hosts=4)
    assert sorted(p.path for p in caught.value.problems) == ["runs[flat-v4].mesh.topology", "runs[laptop].mesh.chips"]
    assert not (tmp_path / "out").exists()


def test_a_multi_host_build_without_a_shared_volume_is_refused_before_anything_is_rendered(compile_runs, tmp_path):
    runs = compile_runs(
        "  - name: one-host\n    extends: base\n    mesh: {accelerator: tpu-v5e, chips: 8, axes: {fsdp: 8}}\n"
        "  - name: four-hosts\n    extends: base\n    mesh: {accelerator: tpu-v5e, chips: 16, topology: 4x4, axes: {fsdp: 16}}\n")
    with pytest.raises(SpecError) as caught:
        cluster_jobs(runs.values(), STORE, IMAGE, "gke", manifest_dir=str(tmp_path / "out"))
    [problem] = caught.value.problems
    assert problem.path == "runs[four-hosts].mesh" and "--shared-volume" in problem.message
    assert not (tmp_path / "out").exists()
    [job] = cluster_jobs([runs["one-host"]], STORE, IMAGE, "gke", manifest_dir=str(tmp_path)).values()
    assert job.executor.shared_volume is None  # one host: its own disk is the build folder


def test_parent_given_by_hash_is_left_to_the_store(compile_runs, tmp_path):
    parent_hash = "ab" * 32
    runs = compile_runs(
        "  - name: orphan\n    extends: base\n"
        f"    init: {{kind: parent, hash: '{parent_hash}'}}\n"
        "    mesh: {accelerator: tpu-v5e, chips: 8, axes: {fsdp: 8}}\n")
    [job] = cluster_jobs(runs.values(), STORE, IMAGE, "gke", manifest_dir=str(tmp_path), shared_volume=CLAIM).values()
    assert job.executor.parent_hash == parent_hash
    assert job.args.to_list() == ["python", *build_command(STORE, runs["orphan"].hash)]


def test_unknown_target_is_bad_input(runs, tmp_path):
    with pytest.raises(SpecError, match="unknown cluster target 'k8s'"):
        cluster_job(runs[0], STORE, IMAGE, "k8s", manifest_dir=str(tmp_path), shared_volume=CLAIM)


def test_importing_registers_nothing_and_never_imports_jax():
    code = (
        "import sys\n"
        "import compiler.lower.cluster\n"
        "from compiler.lower import gke\n"
        "from xmanager.xm_local import registry\n"
        "assert not registry.is_registered(gke.GkeJobSet)\n"
        "gke.register()\n"
        "assert registry.is_registered(gke.GkeJobSet)\n"
        "assert 'jax' not in sys.modules, 'lowering imported jax'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert result.returncode == 0, result.stderr


def test_xm_local_experiment_launches_the_executor_through_its_registry(runs, tmp_path):
    """The launcher's real backend: xm_local accepts GkeJobSet once registered, and renders every run."""
    spec = runs[0].location.file
    out = tmp_path / "manifests"
    code = (
        "from absl import flags\n"
        "flags.FLAGS(['test'])\n"
        "from xmanager import xm_local\n"
        "from compiler.specset import load_spec_set\n"
        "from compiler.lower import cluster, gke\n"
        "gke.register()\n"
        f"jobs = cluster.cluster_jobs(load_spec_set([{spec!r}]).runs, {STORE!r}, {IMAGE!r}, 'gke', manifest_dir={str(out)!r}, shared_volume={CLAIM!r})\n"
        "with xm_local.create_experiment(experiment_title='runix-test') as experiment:\n"
        "    for run_hash, job in jobs.items():\n"
        "        experiment.add(job, identity=run_hash)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                            env={**os.environ, "HOME": str(tmp_path)})  # xm_local keeps its sqlite state in $HOME
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in out.iterdir()) == sorted(f"{run.hash}.yaml" for run in runs)
