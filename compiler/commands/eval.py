"""`runix eval PATH...`: build the missing evals of a spec set's built runs, then print the eval table.

    runix eval specs/tiny                  # evals of every built run; a run not built yet is named, not an error
    runix eval specs/tiny --store URL

Each eval is a derivation (compiler.evals): built once into the store,
verified, replayed by `runix replay`. The table shows each run's held-out
bits per byte per domain (and accuracy of choice tasks) at its final
checkpoint, the best in each column marked, and the relative change against
the run's family baseline (compiler.eval_results). Exit 0 when every eval of
a built run is built, 1 when an eval job failed, 2 on bad input.
"""

from __future__ import annotations

import pathlib


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="build the missing evals of built runs; print the eval table")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders")
    parser.add_argument("--store", metavar="URL", help="store URL (fsspec); default: <project>/.runix/store")
    parser.add_argument("--lockfile", help="lockfile to use instead of lockfiles/<set>.lock.json")
    parser.add_argument("--data-root", help="prepared data (default: <project>/.runix/data)")
    parser.set_defaults(func=run)


def run(args, console) -> int:
    from compiler.commands.store import open_store
    from compiler.lock import load_locked_spec_set, project_root
    from compiler.store import default_data_root

    locked = load_locked_spec_set(args.paths, args.lockfile)
    store = open_store(args.store)
    data_root = args.data_root or str(default_data_root(project_root(pathlib.Path.cwd())))
    code = build_and_show(locked, store, data_root, console, "runix eval " + " ".join(args.paths))
    return code


def build_and_show(locked, store, data_root: str, console, title: str) -> int:
    """Build the missing evals (compiler.eval_launch), then print the table; what launch calls too."""
    from compiler.eval_launch import build_evals, plan_evals
    from compiler.eval_results import collect, family_baselines, print_table
    from compiler.eval_store import EvalStore
    from compiler.report.data import families

    code = build_evals(locked, store, data_root, console, title)
    eval_plan = plan_evals(locked, store)
    if not eval_plan.derivations:
        console.print("no run of this spec set has evals (add an `evals:` section)")
        return code
    waiting = sorted({d.run_name for d in eval_plan.waiting()})
    if waiting:
        console.print(f"not built yet, so not evaluated: {', '.join(waiting)}")
    results = collect(eval_plan.derivations, EvalStore(store).records(), [r.name for r in locked.spec_set.runs])
    print_table(results, family_baselines(families(locked.spec_set.runs)), console)
    return code
