"""Every rendered JobSet is a valid Kubernetes object: the JobSet CRD's own schema and the Kubernetes API schemas.

The JobSet CRD (jobset.x-k8s.io/v1alpha2, tests/fixtures/jobset/, vendored with
its commit and licence) validates the manifest's `spec` with jsonschema, as
the API server would; the Job template inside it is validated as a
`batch/v1` Job against the Kubernetes API schemas (kubernetes-validate,
strict: unknown fields are errors). Then the launch: `runix launch --target
gke` writes one file per unbuilt run, to a folder or a bucket, and refuses
--apply without kubectl or a current context.
"""

from __future__ import annotations

import json
import os

import jsonschema
import kubernetes_validate
import pytest
import yaml

from compiler.lower import gke
from compiler.lower.cluster import cluster_jobs
from compiler.lower.jobset import render_jobset
from compiler.lower.slices import gke_slice
from compiler.specset import load_spec_set
from tests.conftest import REPO, run_cli
from tests.lower.conftest import CLUSTER_RUNS, RecordingExperiment

CRD = REPO / "tests" / "fixtures" / "jobset" / "jobset.x-k8s.io_jobsets.yaml"
KUBERNETES_VERSION = "1.33"
STORE = "s3://bucket/runix"
CLAIM = "runix-builds"  # a ReadWriteMany claim the multi-host runs' pods share
IMAGE = "us-docker.pkg.dev/project/runix/runtime@sha256:0123"
CPU_RUN = """\
  - name: cpu-slice
    extends: base
    mesh: {accelerator: cpu, chips: 4, axes: {data: 2, fsdp: 2}}
  - name: cpu-child
    extends: base
    init: {kind: parent, run: cpu-slice}
    mesh: {accelerator: cpu, chips: 4, axes: {data: 2, fsdp: 2}}
"""


def jobset_spec_schema() -> dict:
    [version] = [v for v in yaml.safe_load(CRD.read_text())["spec"]["versions"] if v["name"] == "v1alpha2"]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


def check_valid(document: dict) -> None:
    """The manifest against the JobSet CRD schema, and its Job template against the Kubernetes schemas."""
    assert (document["apiVersion"], document["kind"]) == ("jobset.x-k8s.io/v1alpha2", "JobSet")
    jsonschema.validate(document["spec"], jobset_spec_schema())
    for replicated in document["spec"]["replicatedJobs"]:
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": f"{document['metadata']['name']}-{replicated['name']}", **replicated["template"]["metadata"]},
               "spec": replicated["template"]["spec"]}
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    metadata = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": document["metadata"]}
    kubernetes_validate.validate(metadata, KUBERNETES_VERSION, strict=True)  # names, labels, annotations


@pytest.fixture
def runs(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("runs:\n" + CLUSTER_RUNS + CPU_RUN)
    return load_spec_set([path]).runs


def rendered(runs, tmp_path, **options) -> dict[str, dict]:
    gke.register()
    out = tmp_path / "manifests"
    jobs = cluster_jobs(runs, STORE, IMAGE, "gke", manifest_dir=str(out), **{"shared_volume": CLAIM, **options})
    with RecordingExperiment() as experiment:
        for run_hash, job in jobs.items():
            experiment.add(job, identity=run_hash)
    return {run.name: yaml.safe_load(gke.manifest_path(out, run.hash).read_text()) for run in runs}


def test_every_manifest_is_valid_against_the_jobset_crd_and_the_kubernetes_schemas(runs, tmp_path):
    documents = rendered(runs, tmp_path, cpu_hosts=2)
    assert set(documents) == {run.name for run in runs}
    for document in documents.values():
        check_valid(document)


def test_the_pods_of_a_build_share_one_build_folder_through_the_claim(runs, tmp_path):
    """Every pod mounts the claim and points TMPDIR at it: the staging folder of the build is one folder."""
    document = rendered(runs, tmp_path, cpu_hosts=2)["h100"]
    pod = document["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "runix-shared", "persistentVolumeClaim": {"claimName": CLAIM}}]
    [container] = pod["containers"]
    assert container["volumeMounts"] == [{"name": "runix-shared", "mountPath": "/runix-shared"}]
    assert {"name": "TMPDIR", "value": "/runix-shared"} in container["env"]


def test_the_schemas_reject_what_the_api_server_would(runs, tmp_path):
    """The checks can fail: a misspelt field or a negative restart count is refused."""
    document = rendered(runs, tmp_path)["v5e-host"]
    broken = json.loads(json.dumps(document))
    broken["spec"]["failurePolicy"]["maxRestarts"] = "three"
    with pytest.raises(jsonschema.ValidationError):
        check_valid(broken)
    broken = json.loads(json.dumps(document))
    broken["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0]["comand"] = ["x"]
    with pytest.raises(kubernetes_validate.ValidationError):
        check_valid(broken)


def test_a_failed_pod_restarts_the_jobset_max_restarts_times(runs, tmp_path):
    default = rendered(runs, tmp_path)["h100"]
    assert default["spec"]["failurePolicy"] == {"maxRestarts": 3}
    [replicated] = default["spec"]["replicatedJobs"]
    assert replicated["template"]["spec"]["backoffLimit"] == 0  # one pod fails → its Job fails → the set restarts
    assert rendered(runs, tmp_path, max_restarts=7)["h100"]["spec"]["failurePolicy"] == {"maxRestarts": 7}
    run = next(r for r in runs if r.name == "h100")
    with pytest.raises(ValueError, match="max_restarts"):
        render_jobset(run_hash=run.hash, run_name=run.name, parent_hash=None, placement=gke_slice(run), image=IMAGE,
                      argv=["python"], env={}, max_restarts=-1)


def test_a_cpu_mesh_lowers_to_a_cpu_node_pool_split_over_hosts(runs, tmp_path):
    document = rendered(runs, tmp_path, cpu_hosts=2)["cpu-slice"]
    [replicated] = document["spec"]["replicatedJobs"]
    job = replicated["template"]["spec"]
    pod = job["template"]["spec"]
    assert (job["parallelism"], job["completions"]) == (2, 2)
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    [container] = pod["containers"]
    assert container["resources"]["limits"] == {"cpu": "2"}
    env = {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}
    assert env["RUNIX_NUM_PROCESSES"] == "2"
    assert "TPU_WORKER_HOSTNAMES" not in env
    with pytest.raises(Exception, match="cannot be split evenly over 3 hosts"):
        rendered(runs, tmp_path, cpu_hosts=3)


def test_a_child_pod_waits_for_its_parent_entry_before_training(runs, tmp_path):
    documents = rendered(runs, tmp_path, cpu_hosts=2)
    by_name = {run.name: run for run in runs}
    pod = documents["cpu-child"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    [wait] = pod["initContainers"]
    assert wait["command"] == ["python", "-m", "runtime.wait", "--store", STORE, "--hash", by_name["cpu-slice"].hash]
    assert wait["image"] == IMAGE
    root = documents["cpu-slice"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert "initContainers" not in root


# --------------------------------------------------------------------------- through the CLI


@pytest.fixture
def cpu_spec(tmp_path):
    """A locked one-run cpu spec set (fixed resolver: no data needed to render)."""
    path = tmp_path / "slice.yaml"
    path.write_text("runs:\n" + CLUSTER_RUNS.split("  - name: v5e-pod")[0] + CPU_RUN)
    return path


def lock(spec) -> None:
    result = run_cli("lock", str(spec), "--data-root", str(REPO / ".runix" / "data"), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_launch_gke_writes_one_manifest_per_unbuilt_run_parents_first(cpu_spec, tmp_path):
    lock(cpu_spec)
    out = tmp_path / "out"
    result = run_cli("launch", str(cpu_spec), "--target", "gke", "--image", IMAGE, "--store", str(tmp_path / "s"),
                     "--manifests", str(out), "--cpu-hosts", "2")
    assert result.returncode == 2  # a local store is refused before anything is written
    assert "cluster pods cannot read" in result.stdout + result.stderr and not out.exists()


def test_launch_gke_to_a_folder_and_to_a_bucket(cpu_spec, tmp_path, s3_store_url, s3_env):
    lock(cpu_spec)
    out = tmp_path / "out"
    result = run_cli("launch", str(cpu_spec), "--target", "gke", "--image", IMAGE, "--store", s3_store_url,
                     "--manifests", str(out), "--cpu-hosts", "2", "--max-restarts", "5", "--shared-volume", CLAIM,
                     env=s3_env)
    assert result.returncode == 0, result.stdout + result.stderr
    written = [line.split("wrote ", 1)[1].strip() for line in result.stdout.splitlines()
               if line.strip().startswith("wrote ") and line.strip().endswith(".yaml")]
    assert len(written) == 2 and all(os.path.isfile(path) for path in written)
    documents = [yaml.safe_load(open(path).read()) for path in written]
    names = [d["metadata"]["annotations"]["runix/run-name"] for d in documents]
    assert names == ["cpu-slice", "cpu-child"]  # parents first
    assert "wrote 2 JobSet manifests" in result.stdout
    for document in documents:
        check_valid(document)
        assert document["spec"]["failurePolicy"] == {"maxRestarts": 5}
    # The default --manifests is a folder of the bucket itself, not a local path named after it.
    result = run_cli("launch", str(cpu_spec), "--target", "gke", "--image", IMAGE, "--store", s3_store_url,
                     "--cpu-hosts", "2", "--shared-volume", CLAIM, env=s3_env)
    assert result.returncode == 0, result.stdout + result.stderr
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_env["AWS_ENDPOINT_URL"], key="testing", secret="testing",
                           skip_instance_cache=True)
    remote = sorted(fs.ls(s3_store_url.removeprefix("s3://") + "/manifests"))
    assert [p.rsplit("/", 1)[1] for p in remote] == sorted(os.path.basename(p) for p in written)
    check_valid(yaml.safe_load(fs.cat_file(remote[0])))


def test_apply_without_kubectl_or_context_refuses_and_writes_nothing(cpu_spec, tmp_path, s3_store_url, s3_env):
    lock(cpu_spec)
    out = tmp_path / "out"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    env = {**s3_env, "PATH": str(tmp_path / "empty-bin"), "KUBECONFIG": str(kubeconfig)}
    result = run_cli("launch", str(cpu_spec), "--target", "gke", "--image", IMAGE, "--store", s3_store_url,
                     "--manifests", str(out), "--cpu-hosts", "2", "--shared-volume", CLAIM, "--apply", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    text = result.stdout + result.stderr
    assert "kubectl is not on PATH" in text and "no current Kubernetes context" in text
    assert "Traceback" not in text and not out.exists()
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_env["AWS_ENDPOINT_URL"], key="testing", secret="testing",
                           skip_instance_cache=True)
    assert fs.find(s3_store_url.removeprefix("s3://")) == []  # not even a derivation registered


def test_the_shipped_cluster_spec_set_renders_valid_manifests_from_a_fresh_clone(tmp_path, s3_store_url, s3_env):
    """The README's command on specs/tiny-tpu: the tiny chain on a v5e-8 slice, one run on 8 H100s."""
    out = tmp_path / "manifests"
    result = run_cli("launch", "specs/tiny-tpu", "--target", "gke", "--image", IMAGE, "--store", s3_store_url,
                     "--manifests", str(out), env=s3_env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    documents = {}
    for path in out.iterdir():
        document = yaml.safe_load(path.read_text())
        check_valid(document)
        documents[document["metadata"]["annotations"]["runix/run-name"]] = document
    assert sorted(documents) == ["h100-code", "tpu-code", "tpu-code-text", "tpu-cooldown"]
    pod = documents["tpu-code"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
                                   "cloud.google.com/gke-tpu-topology": "2x4"}
    assert pod["containers"][0]["resources"]["limits"] == {"google.com/tpu": "8"}
    gpu = documents["h100-code"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert "initContainers" in documents["tpu-cooldown"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
