"""A run as the JobSet GKE runs: one pod per host, all started and failed together.

Why a JobSet (jobset.x-k8s.io/v1alpha2) and not the Kubernetes Job that
xm_local.Kubernetes creates: a multi-host TPU slice is one program over many
VMs. JobSet gives each pod a stable DNS name (`<jobset>-<job>-<i>-<pod>.<jobset>`
through a headless service), starts an Indexed Job whose completion index is the
host's rank, and restarts or fails all hosts together, which is what GKE's TPU
documentation and the JobSet TPU examples use. The same shape carries multi-node
GPU runs.

The pods get the environment that both libtpu and `jax.distributed` read:
`TPU_WORKER_HOSTNAMES` / `TPU_WORKER_ID` (jax/_src/clusters/cloud_tpu_cluster.py,
GkeTpuCluster; libtpu forms the slice from them) and `JAX_COORDINATOR_ADDRESS`
(jax/_src/distributed.py reads it; 8482 is the port GkeTpuCluster would pick).
runix sets them itself instead of relying on an admission webhook, so that the
rendered file says everything the pods will see. `RUNIX_NUM_PROCESSES` and
`RUNIX_PROCESS_ID` give the runtime the rest of `jax.distributed.initialize`
on GPUs, where jax cannot detect them without the Kubernetes API.

Rendering is pure: the same run, image and store give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from compiler.lower.slices import Slice

API_VERSION = "jobset.x-k8s.io/v1alpha2"
REPLICATED_JOB = "slice"
CONTAINER = "runtime"
PARENT_WAIT_CONTAINER = "wait-for-parent"
DEFAULT_MAX_RESTARTS = 3  # a preempted or lost pod restarts the set, which resumes from the store
COORDINATOR_PORT = 8482  # jax/_src/clusters/cloud_tpu_cluster.py: coordinator_port
TPU_RUNTIME_PORT = 8471  # the TPU runtime's port between hosts of a slice (GKE TPU examples)
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"

HASH_LABEL = "runix/hash"  # the short hash: label values stop at 63 characters, a sha256 has 64
RUN_HASH_ANNOTATION = "runix/run-hash"
RUN_NAME_ANNOTATION = "runix/run-name"
PARENT_HASH_ANNOTATION = "runix/parent-hash"
MACHINE_TYPE_ANNOTATION = "runix/machine-type"
EXCLUSIVE_TOPOLOGY = "alpha.jobset.sigs.k8s.io/exclusive-topology"
SHARED_VOLUME = "runix-shared"  # the volume every pod of a multi-host build mounts for its build folder
SHARED_MOUNT = "/runix-shared"  # its mount path; TMPDIR points there, so the staging folder is shared


def jobset_name(run_hash: str) -> str:
    """`runix-<short hash>`: a DNS label that leaves room for the pod suffixes within 63 characters."""
    return f"runix-{run_hash[:12]}"


def pod_hostnames(name: str, hosts: int) -> list[str]:
    """The pods' DNS names, rank order: JobSet's `<jobset>-<job>-<job index>-<pod index>.<subdomain>`."""
    return [f"{name}-{REPLICATED_JOB}-0-{rank}.{name}" for rank in range(hosts)]


def render_jobset(*, run_hash: str, run_name: str, parent_hash: str | None, placement: Slice, image: str,
                  argv: Sequence[str], env: Mapping[str, str], namespace: str = "default",
                  max_restarts: int = DEFAULT_MAX_RESTARTS, parent_wait: Sequence[str] | None = None,
                  shared_volume: str | None = None) -> dict[str, Any]:
    """The JobSet manifest of one run, as a plain dict ready for YAML.

    max_restarts: how often a failed pod restarts the whole JobSet (every pod
      resumes from the run's checkpoints in the store); 0 ends the run at the
      first failure.
    parent_wait: argv of an init container that returns once the parent's
      entry is built (compiler/lower/CLUSTERS.md: "Children wait for parents").
    shared_volume: a ReadWriteMany PersistentVolumeClaim every pod mounts at
      SHARED_MOUNT, with TMPDIR there: the hosts of one build then share its
      build folder, as orbax's multi-host checkpoints need (CLUSTERS.md).
    """
    if max_restarts < 0:
        raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
    name = jobset_name(run_hash)
    labels = {HASH_LABEL: run_hash[:12], "app.kubernetes.io/managed-by": "runix"}
    annotations = {RUN_HASH_ANNOTATION: run_hash, RUN_NAME_ANNOTATION: run_name,
                   MACHINE_TYPE_ANNOTATION: placement.machine_type}
    if parent_hash is not None:
        annotations[PARENT_HASH_ANNOTATION] = parent_hash
    if placement.is_tpu:  # every pod of a slice in one node pool: the chips of one ICI-connected slice
        annotations[EXCLUSIVE_TOPOLOGY] = "cloud.google.com/gke-nodepool"
    container = {
        "name": CONTAINER,
        "image": image,
        "command": list(argv),
        "env": _environment(name, placement, {**env, "TMPDIR": SHARED_MOUNT} if shared_volume else env),
        "ports": _ports(placement),
        "resources": {"limits": {placement.resource: str(placement.chips_per_host)}},
    }
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "nodeSelector": dict(placement.node_selector)}
    if parent_hash is not None and parent_wait is not None:
        pod_spec["initContainers"] = [{"name": PARENT_WAIT_CONTAINER, "image": image, "command": list(parent_wait),
                                       "env": [{"name": key, "value": str(value)} for key, value in sorted(env.items())]}]
    if shared_volume:
        container["volumeMounts"] = [{"name": SHARED_VOLUME, "mountPath": SHARED_MOUNT}]
        pod_spec["volumes"] = [{"name": SHARED_VOLUME, "persistentVolumeClaim": {"claimName": shared_volume}}]
    pod_spec["containers"] = [container]
    pod = {"metadata": {"labels": dict(labels)}, "spec": pod_spec}
    job = {
        "metadata": {"labels": dict(labels)},
        "spec": {"completionMode": "Indexed", "parallelism": placement.hosts, "completions": placement.hosts,
                 "backoffLimit": 0, "template": pod},
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "JobSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": {
            "network": {"enableDNSHostnames": True},
            "failurePolicy": {"maxRestarts": max_restarts},
            "replicatedJobs": [{"name": REPLICATED_JOB, "replicas": 1, "template": job}],
        },
    }


def to_yaml(manifest: Mapping[str, Any]) -> str:
    """The manifest as YAML with a header saying where it came from; keys in manifest order."""
    annotations = manifest["metadata"]["annotations"]
    header = (f"# runix run {annotations[RUN_NAME_ANNOTATION]} ({annotations[RUN_HASH_ANNOTATION]}),\n"
              f"# rendered for a GKE cluster with the JobSet controller; apply with kubectl apply -f <this file>.\n")
    return header + yaml.safe_dump(dict(manifest), sort_keys=False, default_flow_style=False, width=1 << 16)


def _environment(name: str, placement: Slice, env: Mapping[str, str]) -> list[dict[str, Any]]:
    hostnames = pod_hostnames(name, placement.hosts)
    values: dict[str, dict[str, Any]] = {key: {"value": str(value)} for key, value in env.items()}
    values["JAX_COORDINATOR_ADDRESS"] = {"value": f"{hostnames[0]}:{COORDINATOR_PORT}"}
    values["RUNIX_NUM_PROCESSES"] = {"value": str(placement.hosts)}
    values["RUNIX_PROCESS_ID"] = _completion_index()
    if placement.is_tpu:
        values["TPU_WORKER_HOSTNAMES"] = {"value": ",".join(hostnames)}
        values["TPU_WORKER_ID"] = _completion_index()
    return [{"name": key, **values[key]} for key in sorted(values)]


def _completion_index() -> dict[str, Any]:
    """The pod's rank: its Indexed Job completion index (a fresh dict, so the YAML has no anchors)."""
    return {"valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}}


def _ports(placement: Slice) -> list[dict[str, Any]]:
    ports = [{"name": "coordinator", "containerPort": COORDINATOR_PORT}]
    if placement.is_tpu:
        ports.insert(0, {"name": "tpu-runtime", "containerPort": TPU_RUNTIME_PORT})
    return ports
