"""`runix store ls|verify HASH...|gc PATH...`: inspect, check and collect the store.

    runix store ls                          # every entry: built, building, incomplete
    runix store verify 3fa2b1c9             # re-hash every file; exit 1 naming each tampered file
    runix store gc specs/tiny specs/to_code # keep what these spec sets (each with its lock) reach

Every subcommand takes `--store URL` (any fsspec URL); the default is
`<project>/.runix/store`. No environment variable chooses the store.
"""

from __future__ import annotations

import pathlib

from rich.table import Table
from rich.text import Text

from compiler.problems import Location, Problem, SpecError

EXIT_TAMPERED = 1


def register(subparsers) -> None:
    parser = subparsers.add_parser("store", help="inspect (ls), check (verify) and garbage-collect (gc) the store")
    commands = parser.add_subparsers(dest="store_command", required=True, parser_class=type(parser))

    ls = commands.add_parser("ls", help="list entries: hash, name, status, parent")
    _store_arg(ls)
    ls.set_defaults(func=run_ls)

    verify = commands.add_parser("verify", help="re-hash every file of built entries; exit 1 on any difference")
    verify.add_argument("hashes", nargs="*", metavar="HASH", help="run hashes or unique prefixes")
    verify.add_argument("--all", action="store_true", help="verify every built entry")
    _store_arg(verify)
    verify.set_defaults(func=run_verify)

    gc = commands.add_parser("gc", help="remove entries the given spec sets no longer reach (parents by hash are kept)")
    gc.add_argument("paths", nargs="+", metavar="PATH", help="spec sets to keep (each PATH is one spec set with its lockfile)")
    gc.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    _store_arg(gc)
    gc.set_defaults(func=run_gc)


def _store_arg(parser) -> None:
    parser.add_argument("--store", metavar="URL", help="store URL (fsspec); default: <project>/.runix/store")


def open_store(url: str | None, near: pathlib.Path | None = None):
    """The store named by --store, else the project's default; a bad URL is bad input (exit 2)."""
    from compiler.lock import project_root
    from compiler.store import default_store_url, open_store as open_checked

    if url is None:
        url = default_store_url(project_root(near or pathlib.Path.cwd()))
    return open_checked(url)


def run_ls(args, console) -> int:
    store = open_store(args.store)
    entries = store.ls()
    table = Table(title=f"{store.url}: {sum(e.status == 'built' for e in entries)} built, {len(entries)} entries",
                  title_justify="left")
    for column in ("hash", "name", "status", "parent"):
        table.add_column(column)
    for entry in entries:
        style = {"built": "green", "building": "yellow", "registered": "cyan"}.get(entry.status, "red")
        table.add_row(Text(entry.hash[:16]), Text(entry.name), Text(entry.status, style=style),
                      Text(entry.parent_hash[:16] if entry.parent_hash else "-"))
    console.print(table)
    return 0


def run_verify(args, console) -> int:
    store = open_store(args.store)
    if args.all:
        hashes = [e.hash for e in store.ls() if e.status != "building"]
    elif args.hashes:
        hashes = [store.resolve(h) for h in args.hashes]  # unknown or ambiguous: exit 2 before any work
    else:
        raise SpecError([Problem(Location(""), "", "give a HASH to verify, or --all")])
    failed = 0
    for run_hash in hashes:
        problems = store.verify(run_hash)
        if problems:
            failed += 1
            for problem in problems:
                console.print(Text(f"TAMPERED {run_hash[:16]}: {problem}", style="red"))
        else:
            console.print(Text(f"ok {run_hash[:16]}: every file matches its manifest", style="green"))
    failed_evals = _verify_evals(store, console) if args.all else 0
    if failed:
        console.print(Text(f"{failed} of {len(hashes)} entries fail verification", style="red"))
    return EXIT_TAMPERED if failed or failed_evals else 0


def _verify_evals(store, console) -> int:
    """Verify every built eval (compiler.eval_store); returns how many fail."""
    from compiler.eval_store import EvalStore

    evals = EvalStore(store)
    failed = 0
    for eval_hash, name in evals.entries():
        problems = evals.verify(eval_hash)
        for problem in problems:
            console.print(Text(f"TAMPERED eval {eval_hash[:16]} ({name}): {problem}", style="red"))
        failed += bool(problems)
    if evals.entries():
        console.print(Text(f"{len(evals.entries()) - failed} of {len(evals.entries())} evals verify", style="green" if not failed else "red"))
    return failed


def run_gc(args, console) -> int:
    from compiler.lock import load_locked_spec_set

    keep: set[str] = set()
    for path in args.paths:  # every lock must be fresh before anything is removed
        locked = load_locked_spec_set([path])
        for run in locked.spec_set.runs:
            keep.add(run.hash)
            if run.parent_hash:
                keep.add(run.parent_hash)
    store = open_store(args.store, pathlib.Path(args.paths[0]))
    result = store.collect(keep, dry_run=args.dry_run)
    removed = result.removed
    verb = "would remove" if args.dry_run else "removed"
    for entry, reason in result.kept:
        console.print(Text(f"kept {entry.hash[:16]}-{entry.name} ({entry.status}): {reason}"))
    for entry in removed:
        console.print(Text(f"{verb} {entry.hash[:16]}-{entry.name} ({entry.status})"))
    console.print(Text(f"{verb} {len(removed)} entries; kept what {len(args.paths)} spec set(s) reach"))
    return 0
