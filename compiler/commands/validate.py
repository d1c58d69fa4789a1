"""`runix validate PATH...`: every problem of a spec set, or a summary of its runs."""

from __future__ import annotations

from rich.table import Table

from compiler.specset import read_documents, validated_runs


def register(subparsers) -> None:
    parser = subparsers.add_parser("validate", help="check spec files; exit 2 with every problem (file:line field path)")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders")
    parser.set_defaults(func=run)


def run(args, console) -> int:
    runs = validated_runs(read_documents(args.paths))
    table = Table(title=f"{len(runs)} runs valid", title_justify="left")
    for column in ("run", "init", "steps", "tokens", "sources"):
        table.add_column(column)
    for spec, _ in runs:
        parent = spec.parent_ref or "scratch"
        steps = spec.total_steps
        table.add_row(spec.name, parent if len(parent) < 20 else parent[:12] + "…", f"{steps:,}",
                      f"{steps * spec.tokens_per_step:,}",
                      ", ".join(sorted(name for name, src in spec.data.sources.items() if (src.tokens or src.share))))
    console.print(table)
    return 0
