"""`runix launch PATH...`: build every run of a spec set, parents first, through XManager.

    runix launch specs/tiny                       # local executor (default), store .runix/store
    runix launch specs/to_code --target gke --image IMAGE --store gs://bucket/runix --manifests out/

Checks first, writes after: the lock must be fresh and fully resolved, this
machine's runtime and numerics must match the lock (a run trained under other
versions would not be the run its hash names), and parents given by hash must
be built. Then each unbuilt run is registered in the store (its derivation)
and lowered to one XManager work unit; built runs are cache hits. Exit 0 when
every run is built, 1 when a run failed (its descendants are skipped and
named), 2 on bad input.
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
    parser.add_argument("--manifests", help="folder for rendered manifests (gke target; default <store>/manifests)")
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
        return _launch_gke(args, todo, store, console)
    return _then_evals(args, locked, store, data_root, console, _launch_local(args, todo, store, data_root, console))


def _then_evals(args, locked, store, data_root: str, console, code: int) -> int:
    """After the runs, each built run's missing evals, as work units of their own (compiler.eval_launch)."""
    if args.target != "local":
        return code
    from compiler.commands.eval import build_and_show

    return max(code, build_and_show(locked, store, data_root, console, "runix " + " ".join(args.paths)))


def _launch_local(args, todo, store, data_root: str, console) -> int:
    from compiler.lower.local import RUN_BUILT, RUN_FAILED, RUN_SKIPPED, LaunchItem, launch

    if not store.is_local:
        raise SpecError([Problem(Location(store.url), "", "the local target trains on this machine and needs a local "
                                 "store folder (use --target gke for object stores)")])
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
    outcome = launch(items, store.url, pathlib.Path(store.url) / "xmanager", title, args.jobs, on_event, data_root)
    failed = [item for item in items if outcome.status.get(item.hash) != RUN_BUILT]
    if failed:
        console.print(f"[red]{len(failed)} of {len(items)} runs did not build[/]: "
                      + ", ".join(f"{item.name} ({outcome.status.get(item.hash)})" for item in failed))
        return 1
    console.print(f"[green]built {len(items)} runs[/] into {store.url}")
    return 0


def _launch_gke(args, todo, store, console) -> int:
    from compiler.lower.cluster import cluster_jobs

    if not args.image:
        raise SpecError([Problem(Location("--image"), "", "the gke target needs --image (a container with runix installed)")])
    manifests = args.manifests or str(pathlib.Path(store.url) / "manifests")
    jobs = cluster_jobs(todo, store.url, args.image, "gke", manifest_dir=manifests)
    console.print(f"rendered {len(jobs)} JobSet manifests into {manifests} (apply them with kubectl)")
    eval_jobs = _gke_eval_jobs(args, store, manifests)
    if eval_jobs:
        console.print(f"and {len(eval_jobs)} eval jobs, one per run with evals (each waits for its run)")
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
