"""`runix compile PATH... [--dry-run] [--json] [--lockfile F] [--store URL] [--mfu X]`: the plan and its price.

One row per run, parents before children: hash, name, parent, tokens, steps,
parameters (with and without embeddings), training FLOPs, peak memory per chip
against the chip's, the MFU its steps are priced at, where that price comes
from (compiler.pricing: model, measured×N, calibrated×N, --mfu), the steps'
chip-hours, the overheads' (compile, startup, checkpoint saves, evaluations),
their total, wall-clock hours on the run's mesh, the numbers of the run's
unresolved inputs (a column shown when any run has one) and status (built
runs cost nothing); totals at the bottom; then the numbered unresolved
inputs, the lockfile and store used, each price source and overhead source,
the hardware profiles and the formulas.
`--json` prints the same plan as JSON (compiler/PLAN_JSON.md). A run that
cannot fit on its mesh is an error (exit 2). `--aot` also compiles each
distinct train step for its TPU slice on this machine and checks XLA's
per-chip memory (compiler.commands.compile_aot; the only path that imports jax).

The hashes are `runix hash`'s: the spec set is read with its lockfile
(compiler.lock.load_locked_spec_set), so a missing or stale lock is an error
(exit 2) that says how to relock. A run whose inputs cannot be resolved here
(the real-scale recipes' hf:// data) is still planned and priced — the price
depends on its token budget, and its data sizes are its `declared_tokens` —
and is marked, since `runix launch` refuses it.

Status comes from the store (`--store URL`, default `<project>/.runix/store`):
a run whose hash is built there is "built" and costs nothing; the built runs'
timing records (compiler.calibration) are what the other runs are priced by. The store is
only listed; a default store folder that does not exist means nothing is
built, and is not created.

compile writes nothing: storing the plan belongs to the store, and `--dry-run`
is the contract that it never will.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from compiler.commands.common import mfu_fraction, shown_path
from compiler.lock import LockedSpecSet, load_locked_spec_set, project_root


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compile", help="plan every run and price it in chip-hours (--dry-run writes nothing; --json for machines)",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders")
    parser.add_argument("--dry-run", action="store_true", help="plan and price only; write nothing")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (keys: compiler/PLAN_JSON.md)")
    parser.add_argument("--aot", action="store_true",
                        help="also compile each distinct train step for its TPU slice here and check XLA's memory "
                             "per chip (slow: minutes for a real model; imports jax; cached in .runix/aot)")
    parser.add_argument("--lockfile", metavar="FILE",
                        help="lockfile of the spec set (default: <project>/lockfiles/<name>.lock.json)")
    parser.add_argument("--store", metavar="URL",
                        help="store whose built runs cost nothing (fsspec URL; default: <project>/.runix/store)")
    parser.add_argument("--mfu", type=mfu_fraction, metavar="X",
                        help="model-FLOPs utilization to assume for every run, in (0, 1] (default: per accelerator)")
    parser.set_defaults(func=run)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Everything compile reads: the spec set with its lock, and the hashes already built."""

    locked: LockedSpecSet
    built: frozenset[str]
    store_url: str
    store_found: bool  # False: the default store folder does not exist (nothing is built)
    measurements: tuple = ()  # compiler.calibration.Measurement of every built run with a timing record
    aot: object = None  # compiler.aot_check.AotIndex: `compile --aot`'s verdicts and this machine's toolchain
    built_evals: frozenset[str] = frozenset()  # eval hashes built in the store (they cost nothing)


def load_inputs(args) -> Inputs:
    """Read the spec set through its lock (SpecError, exit 2, if missing or stale), then list the store.

    Only reads: the lock module never writes, and the store is only listed. The
    default store is not even opened when its folder does not exist, so a dry
    run on a fresh checkout creates nothing (and needs no fsspec).
    """
    locked = load_locked_spec_set(args.paths, args.lockfile)
    aot = _read_aot_index(project_root(args.paths[0]))
    if args.store is not None:
        built, measurements, built_evals = _read_store(args.store)
        return Inputs(locked, built, args.store, True, measurements, aot, built_evals)
    from compiler.store import default_store_url

    url = default_store_url(project_root(args.paths[0]))
    if not pathlib.Path(url).is_dir():
        return Inputs(locked, frozenset(), url, False, aot=aot)
    built, measurements, built_evals = _read_store(url)
    return Inputs(locked, built, url, True, measurements, aot, built_evals)


def _read_aot_index(root):
    """`runix compile --aot`'s recorded verdicts (compiler.aot_check), with this machine's toolchain to trust them by."""
    from compiler.aot_check import AotIndex, read_index, toolchain

    records = read_index(root)
    return AotIndex(records, toolchain() if records else None)


def _input_key(u) -> tuple[str, str]:
    """("source" or "tokenizer", URI): one input, whichever name a run gives the source."""
    return u.what.split()[0], u.uri


def _read_store(url: str) -> tuple[frozenset[str], tuple, frozenset[str]]:
    """The built hashes, the timing records of built runs (compiler.calibration) the prices calibrate on, and the built evals."""
    from compiler.calibration import read_measurements
    from compiler.eval_store import EvalStore
    from compiler.problems import Location, Problem, SpecError
    from compiler.store import Store

    try:
        store = Store(url)
        return frozenset(store.built_hashes()), tuple(read_measurements(store)), frozenset(EvalStore(store).built())
    except (ImportError, ValueError, OSError) as err:
        raise SpecError([Problem(Location(url), "--store", f"cannot list the store: {err}")]) from None


def run(args, console) -> int:
    from compiler.plan import plan

    inputs = load_inputs(args)
    result = plan(inputs.locked.spec_set, inputs.built, mfu=args.mfu, lock=inputs.locked.lock,
                  measurements=inputs.measurements, aot=inputs.aot, built_evals=inputs.built_evals)
    if args.aot:
        if args.dry_run:
            from compiler.problems import Location, Problem, SpecError

            raise SpecError([Problem(Location(""), "--aot", "--aot compiles (and caches) the steps; drop --dry-run")])
        from compiler.commands import compile_aot

        if not args.json:
            _render(result, console, inputs, dry_run=False)
        return compile_aot.run(args, console, result)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        _render(result, console, inputs, dry_run=args.dry_run)
    return 0


def _names(names: list[str], shown: int = 4) -> str:
    """"a, b, c" or "a, b, c, d and 60 more"."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _evals_note(result) -> str:
    """The evals overhead in one line: how many are priced, at what, and the runs whose evals are not."""
    from compiler.plan import format_count, format_hours

    costs = [r.price.evals for r in result.runs if r.price.evals is not None]
    to_build = [c for c in costs if c.to_build]
    parts = []
    if to_build:
        parts.append(
            f"{sum(c.to_build for c in to_build)} evals to build over {len(to_build)} runs, "
            f"{format_hours(sum(r.eval_chip_hours for r in result.runs))} chip-h: "
            f"{format_count(sum(c.forward_tokens for c in to_build))} forward tokens (compiler/eval_pricing.py) at the forward "
            f"share of each run's priced step + {sum(c.checkpoint_loads for c in to_build)} checkpoint loads priced "
            "as saves; the eval jobs' start and compile are not priced")
    built = sum(c.built for c in costs)
    if built:
        parts.append(f"{built} evals already built cost nothing")
    others = sorted({r.price.overheads["evals"].source for r in result.runs
                     if r.price.evals is None or (not r.price.evals.to_build and not r.price.evals.built)})
    return "; ".join(parts + others)


def _render(result, console, inputs: Inputs, *, dry_run: bool) -> None:
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    from compiler.plan import format_bytes, format_capacity, format_count, format_flops, format_hours, value

    # Unresolved inputs are numbered in order of first use; a run's cell lists its numbers.
    numbers: dict[tuple[str, str], int] = {}
    for r in result.runs:
        for u in r.unresolved:
            numbers.setdefault(_input_key(u), len(numbers) + 1)
    headers = ["hash", "run", "parent", "tokens", "steps", "params", "non-emb", "FLOPs", "mem/chip", "AOT fit",
               "MFU", "price", "chip-h", "+overhead", "total chip-h", "wall-h", "chips", "unresolved", "status"]
    if not numbers:  # every input of every run is locked: no column for it
        headers.remove("unresolved")
    rows = []
    for r in result.runs:
        spec = r.run.spec
        row = [
            r.run.short_hash, r.run.name, r.run.parent_name or (r.run.parent_hash or "")[:12] or "-",
            format_count(spec.total_tokens), f"{spec.total_steps:,}",
            format_count(r.params.total), format_count(r.params.non_embedding), format_flops(r.flops.total),
            f"{format_bytes(r.memory.total)} {r.memory.fraction:4.0%}", r.aot_check.label, f"{r.mfu:.2f}",
            r.price.label,
            format_hours(r.chip_hours), format_hours(r.overhead_chip_hours), format_hours(r.total_chip_hours),
            format_hours(r.wall_hours), f"{spec.mesh.chips} {value(spec.mesh.accelerator)}",
            " ".join(map(str, sorted(numbers[_input_key(u)] for u in r.unresolved))) or "-",
            r.status,
        ]
        if not numbers:
            del row[-2]
        rows.append(row)
    totals = result.totals()
    total_row = [
        "", f"total: {totals.to_build} to build", "", format_count(totals.tokens), "", "", "",
        format_flops(totals.flops), "", "", "", "", format_hours(totals.chip_hours),
        format_hours(totals.overhead_chip_hours), format_hours(totals.total_chip_hours), format_hours(totals.wall_hours),
        "", f"{totals.unresolved} runs", f"{totals.built} built",
    ]
    if not numbers:
        del total_row[-2]
    # One table row holds every run, each column one multi-line Text (rows never wrap, so lines stay
    # aligned), with widths computed here: rich then lays out 15 cells instead of 15 per run, which
    # keeps a 64-run plan far cheaper than importing jax.
    widths = [max(cell_len(row[i]) for row in (headers, *rows, total_row)) for i in range(len(headers))]
    if not console.is_terminal:  # a log or a pipe: one row per line, whatever the width
        console.width = max(console.width, sum(widths) + 3 * len(widths) + 1)
    table = Table(title=f"plan: {len(result.runs)} runs, parents before children", title_justify="left")
    for header, width in zip(headers, widths):
        left = header in ("hash", "run", "parent", "AOT fit", "price", "unresolved", "status")
        table.add_column(header, justify="left" if left else "right", no_wrap=True, width=width)
    styled = {"status": lambda r: "green" if r.built else "",
              "AOT fit": lambda r: "red" if r.aot_check.status == "does not fit" else "",
              "unresolved": lambda r: "yellow" if r.unresolved and not r.built else ""}
    columns = []
    for i, header in enumerate(headers):
        if header in styled:
            columns.append(Text("\n").join(Text(row[i], style=styled[header](r)) for r, row in zip(result.runs, rows)))
        else:
            columns.append(Text("\n".join(row[i] for row in rows)))
    table.add_row(*columns)
    table.add_section()
    table.add_row(*map(Text, total_row))
    console.print(table)
    notes = []
    if numbers:
        users = {key: 0 for key in numbers}
        reasons = {}
        for r in result.runs:
            for u in r.unresolved:
                users[_input_key(u)] += 1
                reasons[_input_key(u)] = u.reason
        notes.append(
            f"unresolved: {totals.unresolved} runs to build read inputs that are not resolved here (numbered below). "
            f"They are priced all the same (the price depends on the token budget; data sizes, where declared, are "
            f"the sources' declared_tokens), but `runix launch` refuses them until `runix lock` resolves every input "
            f"on a machine that can read it:"
        )
        for (kind, uri), number in numbers.items():
            notes.append(f"  {number}  {kind} {uri}: {reasons[kind, uri]}; read by {users[kind, uri]} "
                         f"run{'s' if users[kind, uri] != 1 else ''}")
    else:
        notes.append("inputs: every input of every run is locked to its content.")
    lockfiles = ", ".join(shown_path(path) for path in (inputs.locked.lockfiles or (inputs.locked.lockfile,)))
    store = f"{inputs.store_url} ({totals.built} of these runs built)" if inputs.store_found else \
        f"{inputs.store_url} (no such folder: nothing is built)"
    notes.append(f"lock: {lockfiles}; store: {store}.")
    console.print(Text("\n".join(notes)), soft_wrap=True)
    lines = [
        f"mem/chip: estimated peak per chip and its share of the chip's memory; chip-h, +overhead, total chip-h and "
        f"wall-h count runs to build only in the total; critical path (chains in order, independent runs side by "
        f"side): {format_hours(totals.critical_path_hours)} wall-clock hours.",
        "price: where each run's step time comes from, and MFU the utilization it is priced at"
        + (f" (--mfu {result.mfu_override:g} for every run):" if result.mfu_override is not None
           else " (override with --mfu):"),
    ]
    details: dict[str, list] = {}
    for r in result.runs:
        details.setdefault(f"{r.price.label}: {r.price.detail}", []).append(r)
    for detail, runs in details.items():
        mfus = sorted(r.mfu for r in runs)
        span = f"MFU {mfus[0]:.2f}" if mfus[0] == mfus[-1] or f"{mfus[0]:.2f}" == f"{mfus[-1]:.2f}" \
            else f"MFU {mfus[0]:.2f}–{mfus[-1]:.2f}"
        lines.append(f"  {detail} ({len(runs)} run{'s' if len(runs) != 1 else ''}, {span})")
    lines.append("AOT fit: XLA's peak memory per chip of the run's compiled step against the chip's, as "
                 "`runix compile --aot` recorded it (.runix/aot-index/; trusted only for this jax, libtpu, flags "
                 "and step code):")
    checks: dict[str, list] = {}
    for r in result.runs:
        checks.setdefault(r.aot_check.detail, []).append(r.run.name)
    for detail, names in checks.items():
        lines.append(f"  {detail}: {_names(names)}")
    lines.append("+overhead: compile + startup + checkpoint saves at each spec's cadence + other + evals, each "
                 "with its source in --json `overheads`:")
    for name in ("compile", "startup", "checkpoints", "other"):
        sources = sorted({r.price.overheads[name].source for r in result.runs})
        lines.append(f"  {name}: " + "; ".join(sources))
    lines.append(f"  evals: {_evals_note(result)}")
    lines.append("hardware:")
    for hw in result.hardware():
        lines.append(
            f"  {hw.name}: {hw.peak_flops / 1e12:g} TFLOP/s peak and {hw.hbm_bytes_per_s / 1e9:g} GB/s memory "
            f"bandwidth per chip, {format_capacity(hw.memory_bytes)} per "
            f"{'host, shared by its devices' if hw.memory_shared else 'chip'}. Source: {hw.source}"
        )
    lines.append(
        "FLOPs = tokens × [6·(attention + MLP weights) + 6·layers·heads·head_dim·seq_len (causal attention) + "
        "6·d_model·vocab (output layer)]; chip-h = FLOPs ÷ (peak × MFU) ÷ 3600; total chip-h = chip-h + "
        "overhead; wall-h = total ÷ chips. Formulas and sources: compiler/flops.py, compiler/step_time.py "
        "(constants: compiler/step_time.json), compiler/pricing.py, compiler/memory.py."
    )
    if dry_run:
        lines.append("dry run: nothing was written.")
    console.print(Text("\n".join(lines)), soft_wrap=True)
