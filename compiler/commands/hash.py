"""`runix hash PATH...`: one line per run, `<hash>  <name>`, parents first."""

from __future__ import annotations

from compiler.specset import load_spec_set


def register(subparsers) -> None:
    parser = subparsers.add_parser("hash", help="print '<hash>  <name>' for every run")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders")
    parser.set_defaults(func=run)


def run(args, console) -> int:
    for compiled in load_spec_set(args.paths).runs:
        console.print(f"{compiled.hash}  {compiled.name}", markup=False, soft_wrap=True)
    return 0
