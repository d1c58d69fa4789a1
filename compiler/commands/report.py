"""`runix report PATH... [--store URL] [--out DIR]`: an offline HTML page of a spec set's built runs.

    runix report specs/tiny                       # → ./runix-report/tiny/index.html
    runix report specs/to_code --store gs://bucket/store --out /tmp/to-code-report

Writes index.html (inline CSS, no script, no network), one PNG of loss against
tokens per family of runs, chains.png (the initialization chains as a graph)
and report.json (the table, machine-readable) into DIR, atomically: a
temporary folder beside DIR, renamed into place. Families and file formats:
compiler/report/data.py.

Default DIR: `./runix-report/<spec-set-name>/` in the current folder, where
<spec-set-name> is the lockfile's stem (specs/tiny → tiny). Not inside the
store: the store holds build outputs by hash, may be remote, and is never
written by a report; runs are read from it as they are. DIR is replaced whole,
so it must be empty or a previous report (exit 2 otherwise).

The spec set is hashed with its lockfile, as launch does, so the hashes are
the ones in the store; a missing or stale lock is bad input (exit 2).
"""

from __future__ import annotations

import os
import pathlib

from compiler.commands.common import mfu_fraction, shown_path

DEFAULT_OUT = "runix-report"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="offline HTML + PNG report of built runs: loss curves per family, chain graph, cost table",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="spec files or folders (one spec set)")
    parser.add_argument("--store", metavar="URL", help="store URL (fsspec); default: <project>/.runix/store")
    parser.add_argument("--out", metavar="DIR",
                        help=f"folder to write (replaced whole); default: ./{DEFAULT_OUT}/<spec-set-name>/")
    parser.add_argument("--lockfile", metavar="FILE",
                        help="lockfile of the spec set (default: <project>/lockfiles/<name>.lock.json)")
    parser.add_argument("--mfu", type=mfu_fraction, metavar="X",
                        help="model-FLOPs utilization for the chip-hour estimates, in (0, 1] (default: per accelerator)")
    parser.set_defaults(func=run)


def spec_set_name(paths) -> str:
    """specs/tiny → tiny; a.yaml b/ → a+b (the lockfile's stem)."""
    from compiler.lock import LOCK_SUFFIX, lockfile_name

    return lockfile_name(paths)[: -len(LOCK_SUFFIX)]


def run(args, console) -> int:
    from rich.text import Text

    from compiler.commands.store import open_store
    from compiler.lock import load_locked_spec_set
    from compiler.report import collect, write_report
    from compiler.report.publish import check_output_folder

    locked = load_locked_spec_set(args.paths, args.lockfile)
    name = spec_set_name(args.paths)
    out = pathlib.Path(args.out) if args.out else pathlib.Path(DEFAULT_OUT) / name
    check_output_folder(pathlib.Path(os.path.abspath(out)))  # before any work: bad --out is exit 2
    store = open_store(args.store, pathlib.Path(args.paths[0]))
    data = collect(locked.spec_set, store, spec_set_name=name, paths=[str(p) for p in args.paths],
                   lockfile=shown_path(locked.lockfile), mfu=args.mfu, lock=locked.lock)
    index = write_report(data, out)
    built = sum(r.built for r in data.rows)
    figures = sorted(p.name for p in index.parent.glob("*.png"))
    console.print(Text(f"report of {name}: {len(data.rows)} runs, {built} built, {len(figures)} figures"))
    console.print(Text(f"wrote {index}"), soft_wrap=True)
    return 0
