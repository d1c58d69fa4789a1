"""`runix lock PATH...`: resolve every floating input of a spec set and write its lockfile.

    runix lock specs/tiny            # writes lockfiles/tiny.lock.json
    runix lock specs/tiny --check    # re-resolve, compare, write nothing; exit 1 on drift (CI)

Each file and `tfds://` source is tokenized here, once, into its token shard
(that is its token count), and the shard is published into the store
(`--store URL`, default the project's) after the lockfile is written, so no
build on any host that shares the store tokenizes it again. A source that
cannot be read as documents is bad input (exit 2), nothing written.

Inputs that cannot be reached here (a gs:// bucket, a TFDS dataset not
prepared locally) are listed as unresolved and recorded so; that is not an
error for `lock` (exit 0), but `launch` refuses them.

An existing lockfile that is corrupt or belongs to another spec set is never
overwritten (exit 2) unless --force is given; one in an older format of this
file (runix_lock 1, which pinned runs instead of inputs) is rewritten.
"""

from __future__ import annotations

import pathlib

from rich.table import Table
from rich.text import Text

from compiler.lock import (
    OLDER_LOCK_FORMATS, LockedInput, build_lock, compare_locks, default_lockfile, freshness_problems, lock_command, lock_format, read_lock,
    relative_spec_paths, spec_set_root, write_lock,
)
from compiler.problems import Location, Problem, SpecError
from compiler.specset import compile_documents, read_documents
from compiler.store import default_data_root

EXIT_DRIFT = 1


def register(subparsers) -> None:
    parser = subparsers.add_parser("lock", help="resolve every input (data, tokenizer, runtime) and write lockfiles/")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders (one spec set)")
    parser.add_argument("--lockfile", metavar="FILE", help="lockfile to write (default: <project>/lockfiles/<name>.lock.json)")
    parser.add_argument("--check", action="store_true",
                        help="re-resolve every input and compare with the lockfile; write nothing; exit 1 on drift")
    parser.add_argument("--offline", action="store_true", help="do not contact remote filesystems; mark them unresolved")
    parser.add_argument("--remote-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="give up on a remote input after this long and mark it unresolved (default: 60)")
    parser.add_argument("--data-root", metavar="DIR",
                        help="where built-in corpora, tokenizers and token shards are prepared (default: <project>/.runix/data)")
    parser.add_argument("--tfds-data-dir", metavar="DIR", help="TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--no-token-counts", action="store_true",
                        help="do not tokenize the sources to count tokens (then the first build tokenizes them)")
    parser.add_argument("--store", metavar="URL",
                        help="store the file and TFDS sources' token shards are published into, for every build "
                             "that reads them (default: <project>/.runix/store, as for launch)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite a lockfile that is corrupt or belongs to another spec set")
    parser.set_defaults(func=run)


def run(args, console) -> int:
    from compiler.data_checks import data_problems
    from compiler.environment import numerics_facts, runtime_versions
    from compiler.resolve_inputs import DefaultResolver, ResolveOptions

    documents = read_documents(args.paths)
    unlocked = compile_documents(documents)
    root = spec_set_root(args.paths)
    rel_paths = relative_spec_paths(args.paths, root)
    path = pathlib.Path(args.lockfile) if args.lockfile else default_lockfile(args.paths)
    old = _previous_lock(path, rel_paths, args)
    if args.check:
        if old is None:
            raise SpecError([Problem(Location(str(path)), "", f"no lockfile to check; create it with "
                                                              f"`{lock_command(args.paths, args.lockfile)}`")])
        fix = f"update it with `{lock_command(args.paths, args.lockfile)}`"
        problems = freshness_problems(old, unlocked, rel_paths, Location(str(path)), fix)
        if problems:
            raise SpecError(problems)

    options = ResolveOptions(
        data_root=pathlib.Path(args.data_root) if args.data_root else default_data_root(root),
        tfds_data_dir=pathlib.Path(args.tfds_data_dir) if args.tfds_data_dir else None,
        offline=args.offline,
        remote_timeout=args.remote_timeout,
        count_tokens=not args.no_token_counts,
    )
    resolver = DefaultResolver(options, log=lambda message: console.print(Text(f"  {message}", style="dim")))
    table = Table(title=f"inputs of {' '.join(rel_paths)}", title_justify="left")
    for column in ("input", "status", "digest"):
        table.add_column(column)

    def progress(kind: str, key: str, entry: LockedInput) -> None:
        status = Text("locked", style="green") if entry.locked else Text("unresolved", style="yellow")
        table.add_row(Text(f"{kind} {key}"), status, Text(entry.digest[:16] if entry.digest else "-"))

    environment = {"runtime": runtime_versions(), "numerics": numerics_facts}  # numerics: per accelerator kind
    new = build_lock(unlocked, rel_paths, resolver, environment, progress)
    console.print(table)
    problems = [problem for run in unlocked.runs for problem in data_problems(run, new)]
    if problems:
        raise SpecError(problems)  # exit 2, every problem at once, nothing written
    store = _shard_store(args) if resolver.shards and not args.check else None  # reachable before any write

    if args.check:
        # An entry the specs no longer read is not drift: it enters no hash.
        drifts = [drift for drift in compare_locks(old, new) if drift.note != "no longer used"]
        for drift in drifts:
            console.print(Text(f"drift: {drift}", style="red"))
        if drifts:
            console.print(Text(f"{len(drifts)} input(s) differ from {path}; update it with "
                               f"`{lock_command(args.paths, args.lockfile)}`", style="red"))
            return EXIT_DRIFT
        console.print(Text(f"{path}: every input matches ({len(new.sources)} sources, {len(new.tokenizers)} tokenizers)"))
        return 0

    if old is not None:
        for drift in compare_locks(old, new):
            console.print(Text(f"changed: {drift}"))
    write_lock(path, new)
    if store is not None:
        _publish_shards(store, resolver.shards, console)
    unresolved = [f"{key} ({entry.unresolved})" for key, entry in {**new.sources, **new.tokenizers}.items()
                  if entry.locked is None]
    console.print(Text(f"wrote {path}: {len(new.spec_set.runs)} runs, {len(new.sources)} sources, "
                       f"{len(new.tokenizers)} tokenizers"))
    if unresolved:
        console.print(Text(f"{len(unresolved)} unresolved (a dry run uses declared_tokens; launch refuses them):",
                           style="yellow"))
        for line in unresolved:
            console.print(Text(f"  unresolved: {line}", style="yellow"))
    return 0


def _shard_store(args):
    """The store the shards go to (`--store`, else the project's default); opened (probed) before anything is written."""
    from compiler.commands.store import open_store

    return open_store(args.store)  # the default as for `runix launch`: the working directory's project


def _publish_shards(store, shards, console) -> None:
    """Each token shard `runix lock` tokenized, into the store: builds on any host copy it instead of tokenizing."""
    from dataprep.store_shards import publish

    added = sum(publish(store, shard) for _, shard in sorted(shards.items()))
    console.print(Text(f"token shards: {len(shards)} in {store.url} ({added} published now)"))


def _previous_lock(path: pathlib.Path, rel_paths: tuple[str, ...], args):
    """The lockfile being replaced, or None; a corrupt or foreign one stops us unless --force."""
    if not path.exists() or lock_format(path) in OLDER_LOCK_FORMATS:
        return None  # an older format is rewritten whole: nothing in it is compared
    try:
        old = read_lock(path, "it was not overwritten; fix or remove it, or pass --force")
    except SpecError:
        if args.force and not args.check:
            return None
        raise
    if tuple(old.spec_set.paths) != tuple(rel_paths) and not (args.force and not args.check):
        raise SpecError([Problem(Location(str(path)), "spec_set.paths",
                                 f"lockfile belongs to another spec set ({' '.join(old.spec_set.paths)}), not "
                                 f"{' '.join(rel_paths)}; it was not overwritten: pass --lockfile FILE to lock this "
                                 f"spec set elsewhere, or --force to replace it")])
    return old
