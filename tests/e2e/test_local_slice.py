"""A cluster slice without a cluster: the pods of a rendered JobSet as processes on 127.0.0.1, on a bucket store.

The manifest of a 2-host × 2-device cpu run is rendered by `runix launch
--target gke`; each pod's command and environment are taken from it,
substituting only what Kubernetes would (the completion index, and the pods'
DNS names by 127.0.0.1). The store is a bucket on a real S3-compatible server
(moto) the test starts. One pod is killed with SIGKILL mid-run; then every pod
starts again on an empty disk (what a JobSet restart does, on whatever node),
and the run resumes from the checkpoint copied into the bucket. The entry is
published once, its digest equals a single-process local build of the same
hash bit for bit, and `runix replay --store s3://…` says bit-exact.

Also: two launches of one spec set against one bucket at once build the run once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_cli

DATA_ROOT = REPO / ".runix" / "data"
IMAGE = "registry.example/runix@sha256:0"
WAIT_S = 600
SLICE = """\
runs:
  - name: slice
    model: {preset: tiny}
    batch: {sequences: 8, sequence_length: 128}
    steps: 60
    mesh: {accelerator: cpu, chips: 4, axes: {data: 2, fsdp: 2}}
    checkpoint: {every: 10, keep: 2, digest_every: 10}
    data:
      seed: 0
      sources:
        code: {uri: "builtin://code", role: code, share: 1.0, max_repeats: 8}
    schedule:
      phases:
        - {kind: warmup, length: 10, peak: 3e-3}
        - {kind: cosine, floor: 3e-4}
"""
ONE_RUN = SLICE.replace("steps: 60", "steps: 20").replace(
    "mesh: {accelerator: cpu, chips: 4, axes: {data: 2, fsdp: 2}}", "mesh: {accelerator: cpu, chips: 1}")


def runix(*args, env=None, timeout=WAIT_S):
    """The CLI with the built-in data, and the spec's own lockfile for the commands that read one."""
    extra = ["--data-root", str(DATA_ROOT)] if args[0] in ("launch", "replay", "lock") else []
    if args[0] in ("launch", "lock", "hash"):
        extra += ["--lockfile", str(Path(args[1]).with_suffix(".lock.json"))]
    return run_cli(*args, *extra, env=env, timeout=timeout)


def locked(tmp_path: Path, text: str, name: str) -> tuple[Path, str]:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(text)
    result = runix("lock", str(spec))
    assert result.returncode == 0, result.stdout + result.stderr
    result = runix("hash", str(spec))
    assert result.returncode == 0, result.stderr
    [(run_hash, _)] = [line.split("  ") for line in result.stdout.splitlines()]
    return spec, run_hash


def bucket_fs(env):
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=env["AWS_ENDPOINT_URL"], key="testing", secret="testing",
                             skip_instance_cache=True, use_listings_cache=False)


def pods_of(manifest: dict) -> list[tuple[list[str], dict[str, str]]]:
    """(argv, environment) of every pod, as Kubernetes would start them here."""
    [replicated] = manifest["spec"]["replicatedJobs"]
    job = replicated["template"]["spec"]
    [container] = job["template"]["spec"]["containers"]
    name = manifest["metadata"]["name"]
    pods = []
    for index in range(job["completions"]):
        env = {}
        for item in container["env"]:
            if "valueFrom" in item:
                assert item["valueFrom"]["fieldRef"]["fieldPath"].endswith("['batch.kubernetes.io/job-completion-index']")
                env[item["name"]] = str(index)
            else:
                env[item["name"]] = item["value"].replace(f"{name}-slice-0-0.{name}", "127.0.0.1")
        argv = [sys.executable if container["command"][0] == "python" else container["command"][0],
                *container["command"][1:]]
        pods.append((argv, env))
    return pods


def start(pods, base_env: dict[str, str], disk: Path, logs: Path, attempt: int) -> list[subprocess.Popen]:
    """Start every pod in its own session (so SIGKILL takes the whole pod), each attempt on a fresh disk.

    `disk` stands for the shared volume the manifest mounts at TMPDIR (what Kubernetes would
    mount there): one folder for both pods, a fresh one per attempt (the claim lost with the
    pods is the harder case: the build must resume from the bucket alone).
    """
    disk.mkdir(parents=True)
    started = []
    for index, (argv, env) in enumerate(pods):
        log = open(logs / f"attempt{attempt}-pod{index}.log", "wb")  # noqa: SIM115 (closed with the test)
        started.append(subprocess.Popen(argv, cwd=REPO, env={**base_env, **env, "TMPDIR": str(disk)}, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True))
    return started


def kill(pod: subprocess.Popen) -> None:
    os.killpg(pod.pid, signal.SIGKILL)  # the pod's own session: its build job and trainer, nothing else
    pod.wait(timeout=60)


@pytest.mark.slow  # about 5 minutes here: a reference build, two attempts of two pods, a replay
def test_a_killed_pod_costs_a_restart_not_the_run(tmp_path, s3_store_url, s3_env):
    spec, run_hash = locked(tmp_path, SLICE, "slice")
    reference = tmp_path / "reference"
    result = runix("launch", str(spec), "--store", str(reference))  # one process, the same 4-device mesh
    assert result.returncode == 0, result.stdout + result.stderr
    [reference_entry] = [p for p in reference.iterdir() if p.name.startswith(run_hash)]

    manifests = tmp_path / "manifests"
    result = runix("launch", str(spec), "--target", "gke", "--image", IMAGE, "--store", s3_store_url,
                   "--manifests", str(manifests), "--cpu-hosts", "2", "--shared-volume", "runix-builds", env=s3_env)
    assert result.returncode == 0, result.stdout + result.stderr
    pods = pods_of(yaml.safe_load((manifests / f"{run_hash}.yaml").read_text()))
    assert len(pods) == 2 and pods[0][1]["RUNIX_NUM_PROCESSES"] == "2"
    assert all(env["TMPDIR"] == "/runix-shared" for _, env in pods)  # the claim's mount: `start` gives a folder
    fs = bucket_fs(s3_env)
    root = s3_store_url.removeprefix("s3://")
    base_env = {**os.environ, **s3_env}
    logs = tmp_path / "logs"
    logs.mkdir()

    first = start(pods, base_env, tmp_path / "disk1", logs, 1)
    deadline = time.monotonic() + WAIT_S
    while not fs.glob(f"{root}/.building/{run_hash}-slice/synced/*.json"):  # a checkpoint reached the bucket
        assert all(pod.poll() is None for pod in first), (logs / "attempt1-pod0.log").read_text()
        assert time.monotonic() < deadline, "no checkpoint reached the store"
        time.sleep(0.2)
    kill(first[1])  # a lost pod
    kill(first[0])  # the JobSet restarts every pod of the set
    assert not fs.exists(f"{root}/{run_hash}-slice/COMPLETE.json")

    second = start(pods, base_env, tmp_path / "disk2", logs, 2)
    codes = [pod.wait(timeout=WAIT_S) for pod in second]
    output = (logs / "attempt2-pod0.log").read_text()
    assert codes == [0, 0], output + (logs / "attempt2-pod1.log").read_text()
    assert f"resuming slice ({run_hash[:12]})" in output  # from the bucket's checkpoint: the disk was empty

    entries = [p for p in fs.ls(root, detail=False) if p.rsplit("/", 1)[1].startswith(run_hash)]
    assert entries == [f"{root}/{run_hash}-slice"]  # published once
    stored = json.loads(fs.cat_file(f"{root}/{run_hash}-slice/digest.json"))
    expected = json.loads((reference_entry / "digest.json").read_text())
    assert stored["losses"] == expected["losses"] and stored == expected  # bit for bit
    assert not fs.exists(f"{root}/.building/{run_hash}-slice")  # the build's copies went with the publish

    result = runix("replay", run_hash, "--store", s3_store_url, "--no-progress", env=s3_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bit-exact" in result.stdout


def test_two_launches_against_one_bucket_build_the_run_once(tmp_path, s3_store_url, s3_env):
    spec, run_hash = locked(tmp_path, ONE_RUN, "one")
    env = {**os.environ, **s3_env, "COLUMNS": "200"}
    runix_bin = Path(sys.executable).with_name("runix")
    command = [str(runix_bin), "launch", str(spec), "--store", s3_store_url, "--data-root", str(DATA_ROOT),
               "--lockfile", str(spec.with_suffix(".lock.json"))]
    launches = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True) for _ in range(2)]
    outputs = [launch.communicate(timeout=WAIT_S)[0] for launch in launches]
    assert [launch.returncode for launch in launches] == [0, 0], "\n".join(outputs)
    text = "\n".join(outputs)
    assert text.count(f"runix build: building slice ({run_hash[:12]})") == 1, text
    assert text.count("was built by another builder") + text.count("all 1 runs are built") == 1, text
    fs = bucket_fs(s3_env)
    root = s3_store_url.removeprefix("s3://")
    assert [p.rsplit("/", 1)[1] for p in fs.ls(root, detail=False) if run_hash in p] == [f"{run_hash}-slice"]
    assert fs.exists(f"{root}/{run_hash}-slice/COMPLETE.json")
