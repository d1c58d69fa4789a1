"""`runix hash PATH...`: one line per run, `<hash>  <name>`, parents first.

The hashes include the locked inputs of each run, so a missing or stale
lockfile is an error (exit 2) that names what drifted and how to relock.
"""

from __future__ import annotations

from compiler.lock import load_locked_spec_set


def register(subparsers) -> None:
    parser = subparsers.add_parser("hash", help="print '<hash>  <name>' for every run")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders")
    parser.add_argument("--lockfile", metavar="FILE", help="lockfile of the spec set (default: <project>/lockfiles/<name>.lock.json)")
    parser.set_defaults(func=run)


def run(args, console) -> int:
    for compiled in load_locked_spec_set(args.paths, args.lockfile).spec_set.runs:
        console.print(f"{compiled.hash}  {compiled.name}", markup=False, soft_wrap=True)
    return 0
