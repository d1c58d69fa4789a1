"""`runix launch PATH...`: build every run of a spec set, parents first, through XManager.

    runix launch specs/tiny                       # local executor (default), store .runix/store
    runix launch specs/tiny --store s3://bucket/runix          # trains here, publishes into the bucket
    runix launch specs/tiny-tpu --target gke --image IMAGE --store s3://bucket/runix --manifests out/
    runix launch specs/tiny-tpu --target gke ... --apply       # and submit them with kubectl

Checks first, writes after: the lock must be fresh and fully resolved, this
machine's runtime and numerics must match the lock (local target: a run
trained under other versions would not be the run its hash names), parents
given by hash must be built, every run must lower to its target, and with
--apply kubectl and a current context must be there. Then each unbuilt run is
registered in the store (its derivation) and lowered to one XManager work
unit; built runs are cache hits. The gke target writes one JobSet manifest
per unbuilt run, parents first (compiler/lower/CLUSTERS.md). Exit 0 when
every run is built (or every manifest written), 1 when a run failed (its
descendants are skipped and named), 2 on bad input.
"""

from __future__ import annotations

import pathlib

from compiler.problems import Location, Problem, SpecError


def register(subparsers) -> None:
    parser = subparsers.add_parser("launch", help="build the runs of a spec set through XManager (parents first)")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders")
    parser.add_argument("--store", metavar="URL", help="store URL (fsspec); default: <project>/.runix/store")
    parser.add_argument("--lockfile", help="lockfile to use instead of lockfiles/<set>.lock.json")
    parser.add_argument("--target", choices=("local", "gke"), default="local",
                        help="local: xm_local binaries on this machine (default); gke: render JobSet manifests")
    parser.add_argument("--data-root", help="prepared data (default: <project>/.runix/data, where `runix lock` put it)")
    parser.add_argument("--jobs", type=int, default=1, help="runs built at the same time (local target)")
    parser.add_argument("--image", help="container image with runix installed (gke target)")
    parser.add_argument("--manifests", help="folder or bucket URL for rendered manifests (gke target; "
                                             "default <store>/manifests)")
    parser.add_argument("--max-restarts", type=int, default=None,
                        help="gke target: times a failed pod restarts the run's JobSet, which resumes from the store "
                             "(default 3)")
    parser.add_argument("--cpu-hosts", type=int, default=1,
                        help="gke target: pods a cpu mesh's devices are split over (placement, not in the hash)")
    parser.add_argument("--shared-volume", metavar="CLAIM",
                        help="gke target: a ReadWriteMany PersistentVolumeClaim the pods of a multi-host build mount "
                             "for its build folder (needed by every run of more than one host)")
    parser.add_argument("--apply", action="store_true",
                        help="gke target: submit the manifests with kubectl (needs kubectl and a current context)")
    parser.set_defaults(func=run)


def run(args, console) -> int:
    from compiler.commands.store import open_store
    from compiler.lock import environment_drift, load_locked_spec_set, project_root, require_fully_resolved
    from compiler.plan import plan
    from compiler.store import default_data_root

    locked = load_locked_spec_set(args.paths, args.lockfile)
    runs = locked.spec_set.runs
    store = open_store(args.store)
    built = store.built_hashes()
    todo = [run for run in runs if run.hash not in built]
    require_fully_resolved(locked.lock, todo)
    _require_external_parents(runs, built, store.url)
    if args.jobs < 1:
        raise SpecError([Problem(Location("--jobs"), "", "must be at least 1")])
    if args.apply and args.target != "gke":
        raise SpecError([Problem(Location("--apply"), "", "submits cluster manifests: use it with --target gke")])
    jobs, context = _lower_gke(args, todo, store) if args.target == "gke" else (None, None)  # problems before writes
    if args.target == "local":
        drift = environment_drift(locked.lock, todo)
        if drift:
            raise SpecError([Problem(Location(str(locked.lockfile)), "", f"this machine differs from the lock: {d}; "
                                     f"the runs would not be the runs their hashes name (relock with `runix lock`)")
                             for d in drift])
    priced = {entry["hash"]: entry for entry in plan(locked.spec_set, built).to_json()["runs"]}

    for compiled in runs:
        state = "[green]built (cache hit)[/]" if compiled.hash in built else "to build"
        console.print(f"  {compiled.short_hash}  {compiled.name:<32} {state}")
    data_root = args.data_root or str(default_data_root(project_root(pathlib.Path.cwd())))
    if not todo:
        console.print(f"[green]all {len(runs)} runs are built[/]; nothing to do")
        return _then_evals(args, locked, store, data_root, console, 0)
    for compiled in todo:
        store.register(compiled, locked.lock.entries_for(compiled), priced[compiled.hash])

    if args.target == "gke":
        return _launch_gke(args, jobs, context, store, console)
    return _then_evals(args, locked, store, data_root, console, _launch_local(args, todo, store, data_root, console))


def _then_evals(args, locked, store, data_root: str, console, code: int) -> int:
    """After the runs, each built run's missing evals, as work units of their own (compiler.eval_launch)."""
    if args.target != "local":
        return code
    from compiler.commands.eval import build_and_show

    return max(code, build_and_show(locked, store, data_root, console, "runix " + " ".join(args.paths)))


def _launch_local(args, todo, store, data_root: str, console) -> int:
    from compiler.lower.local import RUN_BUILT, RUN_FAILED, RUN_SKIPPED, LaunchItem, launch

    todo_hashes = {run.hash for run in todo}
    items = [LaunchItem(run.hash, run.name, tuple(p for p in [run.parent_hash] if p in todo_hashes),
                        str(store.building_path(run.hash, run.name) / "error.log")) for run in todo]

    def on_event(event: str, item: LaunchItem, detail: str) -> None:
        if event == "start":
            console.print(f"[bold]▶ {item.name}[/] ({item.hash[:12]})")
        elif event == RUN_BUILT:
            console.print(f"[green]✓ {item.name}[/] built")
        elif event == RUN_FAILED:
            console.print(f"[red]✗ {item.name} failed[/]: {detail}\n  log: {item.log_path}")
        elif event == RUN_SKIPPED:
            console.print(f"[yellow]- {item.name} skipped[/]: {detail}")

    title = "runix " + " ".join(args.paths)
    outcome = launch(items, store.url, _xmanager_dir(store), title, args.jobs, on_event, data_root)
    failed = [item for item in items if outcome.status.get(item.hash) != RUN_BUILT]
    if failed:
        console.print(f"[red]{len(failed)} of {len(items)} runs did not build[/]: "
                      + ", ".join(f"{item.name} ({outcome.status.get(item.hash)})" for item in failed))
        return 1
    console.print(f"[green]built {len(items)} runs[/] into {store.url}")
    return 0


def _xmanager_dir(store) -> pathlib.Path:
    """XManager's sqlite state: beside a local store, else in the project's .runix/ (sqlite needs a local file)."""
    from compiler.lock import project_root

    if store.is_local:
        return pathlib.Path(store.root) / "xmanager"
    return (project_root(pathlib.Path.cwd()) or pathlib.Path.cwd()) / ".runix" / "xmanager"


def _manifest_dir(args, store) -> str:
    return args.manifests or f"{store.url.rstrip('/')}/manifests"


def _lower_gke(args, todo, store):
    """({hash: GKE job} of every unbuilt run, the kubectl context or None), checked before anything is written."""
    from compiler.lower.cluster import cluster_jobs
    from compiler.lower.jobset import DEFAULT_MAX_RESTARTS

    problems = []
    if not args.image:
        problems.append(Problem(Location("--image"), "", "the gke target needs --image (a container with runix installed)"))
    max_restarts = DEFAULT_MAX_RESTARTS if args.max_restarts is None else args.max_restarts
    if max_restarts < 0:
        problems.append(Problem(Location("--max-restarts"), "", "must be 0 or more"))
    if args.cpu_hosts < 1:
        problems.append(Problem(Location("--cpu-hosts"), "", "must be at least 1"))
    if problems:
        raise SpecError(problems)
    jobs = cluster_jobs(todo, store.url, args.image, "gke", manifest_dir=_manifest_dir(args, store),
                        max_restarts=max_restarts, cpu_hosts=args.cpu_hosts, shared_volume=args.shared_volume)
    if not args.apply:
        return jobs, None
    from compiler.lower.kubectl import require_kubectl

    return jobs, require_kubectl()


def _launch_gke(args, jobs, context, store, console) -> int:
    """Render every job through a real XManager experiment (the GkeJobSet launch writes the files), parents first."""
    from xmanager import xm_local

    from compiler.lower import gke
    from compiler.lower.local import configure_xmanager

    configure_xmanager(_xmanager_dir(store))
    gke.register()
    with xm_local.create_experiment(experiment_title="runix " + " ".join(args.paths)) as experiment:
        for run_hash, job in jobs.items():
            experiment.add(job, identity=run_hash)
        manifests = _manifest_dir(args, store)
        eval_jobs = _gke_eval_jobs(args, store, manifests)  # after the runs: each waits for its run's entry
        for job_hash, job in eval_jobs.items():
            experiment.add(job, identity=job_hash)
    every = {**jobs, **eval_jobs}
    written = [(gke.manifest_url(manifests, job_hash), gke.render_job(job)) for job_hash, job in every.items()]
    for url, _ in written:
        console.print(f"  wrote {url}")
    console.print(f"wrote {len(jobs)} JobSet manifests to {manifests}, parents first"
                  + (f", and {len(eval_jobs)} eval jobs (one per run with evals, each waits for its run)" if eval_jobs else ""))
    if not args.apply:
        console.print("submit them with kubectl apply -f, in this order (or launch again with --apply)")
        return 0
    from compiler.lower.kubectl import apply

    applied = apply(written, context)
    console.print(f"[green]applied {len(applied)} JobSets[/] with kubectl (context {context}); children "
                  f"wait for their parents' entries in the store")
    return 0


def _gke_eval_jobs(args, store, manifests: str):
    """The eval jobs of every run (compiler.lower.eval_jobs), their derivations registered in the store."""
    from compiler.eval_launch import plan_evals
    from compiler.eval_store import EvalStore
    from compiler.evals import lock_entries_for
    from compiler.lock import load_locked_spec_set
    from compiler.lower.eval_jobs import cluster_eval_jobs

    locked = load_locked_spec_set(args.paths, args.lockfile)
    eval_plan = plan_evals(locked, store)
    by_run: dict[str, list] = {}
    for derivation in eval_plan.derivations:
        if derivation.hash not in eval_plan.built:
            by_run.setdefault(derivation.run_hash, []).append(derivation)
    jobs = cluster_eval_jobs(locked.spec_set.runs, by_run, store.url, args.image, manifest_dir=manifests)
    evals = EvalStore(store)
    for derivations in by_run.values():
        for derivation in derivations:
            evals.register(derivation, lock_entries_for(derivation, locked.lock))
    return jobs


def _require_external_parents(runs, built: set[str], where: str) -> None:
    in_set = {run.hash for run in runs}
    problems = [
        Problem(run.location, f"runs[{run.name}].init.hash",
                f"parent {run.parent_hash[:12]} is neither in this spec set nor built in the store {where}")
        for run in runs if run.parent_hash and run.parent_hash not in in_set and run.parent_hash not in built
    ]
    if problems:
        raise SpecError(problems)
