"""`runix launch --target gke --apply`: submit rendered JobSets with kubectl, parents first.

Checks before anything is written or submitted: kubectl must be on PATH and
the kubeconfig must name a current context (read with the `kubernetes`
package's own kubeconfig loader, the file kubectl reads). Each missing piece
is one problem of one SpecError, so the CLI exits 2 naming all of them.

Why submitting every manifest at once is safe: a child's pods start with an
init container (`python -m runtime.wait`) that returns only once the parent's
entry is built in the store (compiler/lower/CLUSTERS.md, "Children wait for
parents"), so the cluster sequences the chain and this launcher need not stay
alive. Manifests are still applied parents first, so a reader of
`kubectl get jobsets` sees the chain in order.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence

from compiler.problems import Location, Problem, SpecError

APPLY_TIMEOUT_S = 120  # one `kubectl apply`; a cluster that does not answer in two minutes is not reachable


def require_kubectl(environ: Mapping[str, str] | None = None) -> str:
    """The kubeconfig's current context; SpecError naming kubectl and/or the context when missing."""
    import os

    environ = os.environ if environ is None else environ
    problems = []
    if shutil.which("kubectl", path=environ.get("PATH", "")) is None:
        problems.append(Problem(Location("--apply"), "", "kubectl is not on PATH; install it, or drop --apply and "
                                                         "apply the written manifests yourself"))
    context = _current_context(environ.get("KUBECONFIG"))
    if context is None:
        where = environ.get("KUBECONFIG") or "~/.kube/config"
        problems.append(Problem(Location("--apply"), "", f"no current Kubernetes context in {where} "
                                                         f"(kubectl config use-context NAME)"))
    if problems:
        raise SpecError(problems)
    return context


def apply(manifests: Sequence[tuple[str, str]], context: str) -> list[str]:
    """`kubectl --context C apply -f -` for each (url, yaml) in order; returns the urls applied.

    The YAML goes through stdin, so a manifest in a bucket needs no download.
    A failed apply stops the rest (a child is never submitted without its parent).
    """
    applied = []
    for url, text in manifests:
        done = subprocess.run(["kubectl", "--context", context, "apply", "-f", "-"], input=text, text=True,
                              capture_output=True, timeout=APPLY_TIMEOUT_S, check=False)
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip().splitlines()
            raise SpecError([Problem(Location(url), "", f"kubectl apply failed: {message[-1] if message else done.returncode}")])
        applied.append(url)
    return applied


def _current_context(kubeconfig: str | None) -> str | None:
    from kubernetes import config as kube_config
    from kubernetes.config.config_exception import ConfigException

    try:
        _, current = kube_config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError, TypeError, ValueError):
        return None
    return (current or {}).get("name") or None
