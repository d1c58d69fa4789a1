"""`runix compile PATH... [--dry-run] [--json] [--mfu X]`: the plan and its price, before anything runs.

One row per run, parents before children: hash, name, parent, tokens, steps,
parameters (with and without embeddings), training FLOPs, peak memory per chip
against the chip's, MFU, chip-hours, wall-clock hours on the run's mesh, and
status (built runs cost nothing); totals at the bottom; then the hardware
profiles and the formulas used. `--json` prints the same plan as JSON
(compiler/PLAN_JSON.md). A run that cannot fit on its mesh is an error (exit 2).

compile writes nothing: storing the plan belongs to the store, and `--dry-run`
is the contract that it never will.
"""

from __future__ import annotations

import argparse
import json

from compiler.specset import SpecSet, load_spec_set


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compile", help="plan every run and price it in chip-hours (--dry-run writes nothing; --json for machines)",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders")
    parser.add_argument("--dry-run", action="store_true", help="plan and price only; write nothing")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (keys: compiler/PLAN_JSON.md)")
    parser.add_argument("--mfu", type=_mfu, metavar="X",
                        help="model-FLOPs utilization to assume for every run, in (0, 1] (default: per accelerator)")
    parser.set_defaults(func=run)


def _mfu(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]; MFU is a fraction of peak, e.g. 0.45")
    return value


def load_inputs(args) -> tuple[SpecSet, frozenset[str]]:
    """Everything compile reads, in one place: the spec set and the hashes already built.

    The lock check (refuse a missing or stale lockfile, price unresolvable
    sources from declared_tokens) slots in here, as do the built hashes once a
    store exists; until then nothing is built.
    """
    return load_spec_set(args.paths), frozenset()


def run(args, console) -> int:
    from compiler.plan import plan

    spec_set, built = load_inputs(args)
    result = plan(spec_set, built, mfu=args.mfu)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        _render(result, console, dry_run=args.dry_run)
    return 0


def _render(result, console, *, dry_run: bool) -> None:
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    from compiler.plan import format_bytes, format_capacity, format_count, format_flops, format_hours, value

    headers = ("hash", "run", "parent", "tokens", "steps", "params", "non-emb", "FLOPs", "mem/chip",
               "MFU", "chip-h", "wall-h", "chips", "status")
    rows = []
    for r in result.runs:
        spec = r.run.spec
        rows.append((
            r.run.short_hash, r.run.name, r.run.parent_name or (r.run.parent_hash or "")[:12] or "-",
            format_count(spec.total_tokens), f"{spec.total_steps:,}",
            format_count(r.params.total), format_count(r.params.non_embedding), format_flops(r.flops.total),
            f"{format_bytes(r.memory.total)} {r.memory.fraction:4.0%}", f"{r.mfu:.2f}",
            format_hours(r.chip_hours), format_hours(r.wall_hours), f"{spec.mesh.chips} {value(spec.mesh.accelerator)}",
            r.status,
        ))
    totals = result.totals()
    total_row = (
        "", f"total: {totals.to_build} to build", "", format_count(totals.tokens), "", "", "",
        format_flops(totals.flops), "", "", format_hours(totals.chip_hours), format_hours(totals.wall_hours),
        "", f"{totals.built} built",
    )
    # One table row holds every run, each column one multi-line Text (rows never wrap, so lines stay
    # aligned), with widths computed here: rich then lays out 14 cells instead of 14 per run, which
    # keeps a 64-run plan far cheaper than importing jax.
    widths = [max(cell_len(row[i]) for row in (headers, *rows, total_row)) for i in range(len(headers))]
    if not console.is_terminal:  # a log or a pipe: one row per line, whatever the width
        console.width = max(console.width, sum(widths) + 3 * len(widths) + 1)
    table = Table(title=f"plan: {len(result.runs)} runs, parents before children", title_justify="left")
    for header, width in zip(headers, widths):
        table.add_column(header, justify="left" if header in ("hash", "run", "parent", "status") else "right",
                         no_wrap=True, width=width)
    columns = [Text("\n".join(row[i] for row in rows)) for i in range(len(headers) - 1)]
    status = Text("\n").join(Text(row[-1], style="green" if r.built else "") for r, row in zip(result.runs, rows))
    table.add_row(*columns, status)
    table.add_section()
    table.add_row(*map(Text, total_row))
    console.print(table)
    lines = [
        f"mem/chip: estimated peak per chip and its share of the chip's memory; chip-h and wall-h count runs to "
        f"build only in the total; critical path (chains in order, independent runs side by side): "
        f"{format_hours(totals.critical_path_hours)} wall-clock hours.",
        "MFU assumed: " + (f"{result.mfu_override:g} for every run (--mfu)" if result.mfu_override is not None
                           else "each accelerator's default (override with --mfu)"),
    ]
    for hw in result.hardware():
        lines.append(
            f"  {hw.name}: {hw.peak_flops / 1e12:g} TFLOP/s peak per chip, {format_capacity(hw.memory_bytes)} per "
            f"{'host, shared by its devices' if hw.memory_shared else 'chip'}, default MFU {hw.default_mfu:g}. "
            f"Source: {hw.source}"
        )
    lines.append(
        "FLOPs = tokens × [6·(attention + MLP weights) + 6·layers·heads·head_dim·seq_len (causal attention) + "
        "6·d_model·vocab (output layer)]; chip-h = FLOPs ÷ (peak × MFU) ÷ 3600; wall-h = chip-h ÷ chips. "
        "Formulas and sources: compiler/flops.py, compiler/memory.py."
    )
    if dry_run:
        lines.append("dry run: nothing was written.")
    console.print(Text("\n".join(lines)), soft_wrap=True)
