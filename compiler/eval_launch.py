"""Build the missing evals of built runs: what `runix launch` does after its runs, and `runix eval` alone.

Each built run whose evals are not all in the store gets one work unit of
its own (`python -m runtime.evaluate --store URL --hash H ...`, every missing
eval of that run: one process loads each checkpoint once), lowered through
XManager's local executor like the runs. An eval that is built is never
computed again; a run that is not built has no evals to build yet (it is
named, not an error).
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import sys
from collections.abc import Callable, Sequence

from compiler.eval_store import EvalStore
from compiler.evals import EvalDerivation, EvalInputError, lock_entries_for, overlap_problems, spec_set_derivations
from compiler.problems import Location, Problem, SpecError


@dataclasses.dataclass(frozen=True)
class EvalPlan:
    derivations: tuple[EvalDerivation, ...]  # every eval of the spec set
    built: frozenset[str]  # eval hashes in the store
    runs_built: frozenset[str]  # run hashes in the store

    def missing(self) -> dict[str, list[EvalDerivation]]:
        """Run hash → its unbuilt evals, for built runs only (in spec-set order)."""
        out: dict[str, list[EvalDerivation]] = {}
        for derivation in self.derivations:
            if derivation.hash not in self.built and derivation.run_hash in self.runs_built:
                out.setdefault(derivation.run_hash, []).append(derivation)
        return out

    def waiting(self) -> list[EvalDerivation]:
        """Evals whose run is not built (nothing to evaluate yet)."""
        return [d for d in self.derivations if d.run_hash not in self.runs_built]


def plan_evals(locked, store) -> EvalPlan:
    """The eval derivations of a locked spec set (compiler.lock.LockedSpecSet) against a store."""
    problems = overlap_problems(locked.spec_set.runs, locked.lock)
    if problems:
        raise SpecError(problems)
    try:
        derivations = spec_set_derivations(locked.spec_set.runs, locked.lock)
    except EvalInputError as err:
        raise SpecError([Problem(Location(str(locked.lockfile)), "evals", str(err))]) from None
    unique = tuple({d.hash: d for d in derivations}.values())
    return EvalPlan(unique, frozenset(EvalStore(store).built()), frozenset(store.built_hashes()))


def evaluate_command(store_url: str, hashes: Sequence[str], data_root: str | None = None) -> list[str]:
    """Arguments of an eval job (after the Python interpreter)."""
    command = ["-m", "runtime.evaluate", "--store", store_url]
    for hash_ in hashes:
        command += ["--hash", hash_]
    return command + ["--data-root", data_root] if data_root else command


def build_evals(locked, store, data_root: str | None, console, title: str) -> int:
    """Register and build every missing eval of the built runs; 0 when all are built, 1 when a job failed."""
    eval_plan = plan_evals(locked, store)
    missing = eval_plan.missing()
    if not eval_plan.derivations:
        return 0
    evals = EvalStore(store)
    names = {run.hash: run.name for run in locked.spec_set.runs}
    todo = sum(len(v) for v in missing.values())
    console.print(f"evals: {len(eval_plan.derivations)} in the spec set, {len(eval_plan.built & {d.hash for d in eval_plan.derivations})} "
                  f"already built, {todo} to build")
    if not missing:
        return 0
    if not store.is_local:
        raise SpecError([Problem(Location(store.url), "", "evals build on this machine and need a local store folder")])
    for derivations in missing.values():
        for derivation in derivations:
            evals.register(derivation, lock_entries_for(derivation, locked.lock))
    units = [(names[run_hash], evaluate_command(store.url, [d.hash for d in ds], data_root))
             for run_hash, ds in missing.items()]

    def on_event(event: str, name: str, detail: str) -> None:
        if event == "start":
            console.print(f"[bold]▶ evals of {name}[/] ({len(missing_by_name[name])} evals)")
        elif event == "built":
            console.print(f"[green]✓ evals of {name}[/] built")
        else:
            console.print(f"[red]✗ evals of {name} failed[/]: {detail}")

    missing_by_name = {names[h]: ds for h, ds in missing.items()}
    failed = run_local_units(units, pathlib.Path(store.url) / "xmanager", title + " (evals)", on_event)
    return 1 if failed else 0


def run_local_units(units: Sequence[tuple[str, list[str]]], db_dir: pathlib.Path, title: str,
                    on_event: Callable[[str, str, str], None]) -> list[str]:
    """One xm_local work unit per (name, args), one at a time; returns the names that failed."""
    from compiler.lower.local import configure_xmanager

    configure_xmanager(db_dir)
    failed: list[str] = []

    async def experiment() -> None:
        from xmanager import xm, xm_local

        async with xm_local.create_experiment(experiment_title=title) as exp:
            [executable] = exp.package([xm.binary(path=sys.executable, args=[], executor_spec=xm_local.LocalSpec())])
            for name, args in units:
                on_event("start", name, "")
                unit = await exp.add(xm.Job(executable, executor=xm_local.Local(), args=args))
                try:
                    await unit.wait_until_complete()
                except Exception as err:  # noqa: BLE001 (xm raises on a non-zero exit)
                    failed.append(name)
                    on_event("failed", name, f"{type(err).__name__}: {err}")
                    continue
                on_event("built", name, "")

    try:
        asyncio.run(experiment())
    except Exception:
        if not failed:
            raise
    return failed
