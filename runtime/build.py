"""`python -m runtime.build --store URL --hash HASH [--data-root DIR]`: build one registered run.

This is what every launched job runs, on this machine (xm_local) or on a
cluster pod. Like a Nix builder it needs only the store and the hash: the
launcher registered the run's derivation (spec, lock entries, plan) in the
store, and this job

  1. returns at once if the run is built (a cache hit),
  2. takes the run's build lock (a second builder of the same hash waits, then
     finds it built), preparing `<store>/.building/<hash>-<name>/`, which keeps
     an interrupted build's checkpoints so a relaunch resumes it,
  3. checks the parent is built and verified,
  4. trains in a child process (`python -m runtime`, which pins the numerics
     environment before importing jax),
  5. publishes the entry atomically, completion marker last.

Exit codes follow the trainer's: 0 built, 1 training failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtime.build", description="Build one registered run into the store.")
    parser.add_argument("--store", required=True, help="store URL (fsspec)")
    parser.add_argument("--hash", required=True, dest="run_hash", help="the run's hash")
    parser.add_argument("--data-root", help="root of the prepared corpora, tokenizers and token shards")
    parser.add_argument("--no-progress", action="store_true", help="do not draw the trainer's progress bar")
    return parser.parse_args(argv)


def trainer_command(run_dir: Path, parent_dir: Path | None, data_root: str | None, show_progress: bool) -> list[str]:
    command = [sys.executable, "-m", "runtime", "--run-dir", str(run_dir)]
    if parent_dir is not None:
        command += ["--parent-dir", str(parent_dir)]
    if data_root:
        command += ["--data-root", data_root]
    if not show_progress:
        command.append("--no-progress")
    return command


def build(store_url: str, run_hash: str, data_root: str | None, show_progress: bool = True) -> int:
    from compiler.store import Store, StoreError

    try:
        store = Store(store_url)
        if store.is_built(run_hash):
            print(f"runix build: {run_hash[:12]} is built (cache hit)", flush=True)
            return EXIT_OK
        name, document, _, _ = store.derivation(run_hash)
        parent_hash = document.get("parent_hash")
        parent_dir = None
        if parent_hash is not None:
            if not store.is_built(parent_hash):
                print(f"runix build: error: run {name} needs parent {parent_hash[:12]}, which is not built in "
                      f"{store_url}", file=sys.stderr)
                return EXIT_BAD_INPUT
            parent_dir = store.local_copy(parent_hash)
        work = store.begin_build(run_hash)
    except StoreError as err:
        print(f"runix build: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if work is None:
        print(f"runix build: {name} ({run_hash[:12]}) was built by another builder", flush=True)
        return EXIT_OK
    with work:
        state = "resuming" if work.resumed else "building"
        print(f"runix build: {state} {name} ({run_hash[:12]}) in {work.path}", flush=True)
        code = subprocess.call(trainer_command(work.path, parent_dir, data_root, show_progress))
        if code != EXIT_OK:
            print(f"runix build: {name} failed with exit code {code}; log: {work.path / 'error.log'}", file=sys.stderr)
            return code
        if not _complete(work.path):
            print(f"runix build: {name}: the trainer stopped before the last step", file=sys.stderr)
            return EXIT_FAILED
        try:
            entry = work.finish()
        except StoreError as err:
            print(f"runix build: error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
    print(f"runix build: built {name} ({run_hash[:12]}) → {entry}", flush=True)
    return EXIT_OK


def _complete(run_dir: Path) -> bool:
    from runtime.digest import read_digest

    try:
        return read_digest(run_dir / "digest.json").complete
    except (OSError, ValueError, KeyError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return build(args.store, args.run_hash, args.data_root, show_progress=not args.no_progress)


if __name__ == "__main__":
    sys.exit(main())
