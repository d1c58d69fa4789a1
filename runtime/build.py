"""`python -m runtime.build --store URL --hash HASH [--data-root DIR]`: build one registered run.

This is what every launched job runs, on this machine (xm_local) or on each
pod of a cluster slice. Like a Nix builder it needs only the store and the
hash: the launcher registered the run's derivation (spec, lock entries, plan)
in the store, and this job

  1. returns at once if the run is built (a cache hit),
  2. process 0 takes the run's build lease (a second builder of the same hash
     waits — at most --lease-wait seconds — then finds it built), preparing
     the build folder; an interrupted build's checkpoints are resumed from
     there or, on an object store, pulled from the store,
  3. checks the parent is built and verified,
  4. takes each file or TFDS source's token shard from the store (tokenized
     and published once if absent: runtime.data_source.shards_from_store),
  5. trains in a child process (`python -m runtime`, which pins the numerics
     environment before importing jax), copying each finished checkpoint into
     the store while it trains (object stores),
  6. process 0 publishes the entry atomically, completion marker last.

Multi-process builds (a slice of several hosts): the process index, the
process count and the coordinator address come from the environment the
JobSet gives each pod (`RUNIX_PROCESS_ID` — the pod's completion index —,
`RUNIX_NUM_PROCESSES`, `JAX_COORDINATOR_ADDRESS`; compiler/lower/jobset.py),
or from the flags of the same names. Every process trains (the trainer calls
`jax.distributed.initialize` and reads only its own rows of each batch);
only process 0 holds the lease, copies checkpoints and publishes. The
processes of one build share its build folder: orbax writes each process's
shards and process 0's metadata into one checkpoint directory.

Exit codes follow the trainer's: 0 built, 1 training failed (or gave up
waiting for another builder), 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_LEASE_WAIT_S = 24 * 3600.0
SYNC_EVERY_S = 5.0
ENV_PROCESS_ID, ENV_NUM_PROCESSES, ENV_COORDINATOR = "RUNIX_PROCESS_ID", "RUNIX_NUM_PROCESSES", "JAX_COORDINATOR_ADDRESS"


def parse_args(argv: list[str] | None, environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m runtime.build", description="Build one registered run into the store.")
    parser.add_argument("--store", required=True, help="store URL (fsspec)")
    parser.add_argument("--hash", required=True, dest="run_hash", help="the run's hash")
    parser.add_argument("--data-root", help="root of the prepared corpora, tokenizers and token shards")
    parser.add_argument("--no-progress", action="store_true", help="do not draw the trainer's progress bar")
    parser.add_argument("--num-processes", type=int, default=_int_env(environ, ENV_NUM_PROCESSES, 1),
                        help=f"processes of this build (default ${ENV_NUM_PROCESSES}, else 1)")
    parser.add_argument("--process-id", type=int, default=_int_env(environ, ENV_PROCESS_ID, 0),
                        help=f"this process's index (default ${ENV_PROCESS_ID}, else 0)")
    parser.add_argument("--coordinator-address", default=environ.get(ENV_COORDINATOR),
                        help=f"host:port of process 0 (default ${ENV_COORDINATOR})")
    parser.add_argument("--lease-ttl", type=float, help="seconds a build lease on an object store lasts without a "
                                                        "heartbeat (default 60)")
    parser.add_argument("--lease-wait", type=float, default=DEFAULT_LEASE_WAIT_S,
                        help="seconds to wait for another builder of the same run before giving up")
    return parser.parse_args(argv)


def _int_env(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        print(f"runix build: error: ${name} must be an integer, got {value!r}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None


def trainer_command(run_dir: Path, parent_dir: Path | None, data_root: str | None, show_progress: bool,
                    num_processes: int = 1, process_id: int = 0, coordinator: str | None = None) -> list[str]:
    command = [sys.executable, "-m", "runtime", "--run-dir", str(run_dir)]
    if parent_dir is not None:
        command += ["--parent-dir", str(parent_dir)]
    if data_root:
        command += ["--data-root", data_root]
    if not show_progress:
        command.append("--no-progress")
    if num_processes > 1:
        command += ["--num-processes", str(num_processes), "--process-id", str(process_id),
                    "--coordinator-address", str(coordinator)]
    return command


def build(store_url: str, run_hash: str, data_root: str | None, show_progress: bool = True, *,
          num_processes: int = 1, process_id: int = 0, coordinator: str | None = None,
          lease_ttl: float | None = None, lease_wait: float = DEFAULT_LEASE_WAIT_S) -> int:
    from compiler.store import StoreError, open_store

    if num_processes < 1 or not 0 <= process_id < num_processes:
        print(f"runix build: error: process {process_id} is not in [0, {num_processes})", file=sys.stderr)
        return EXIT_BAD_INPUT
    if num_processes > 1 and not coordinator:
        print(f"runix build: error: a {num_processes}-process build needs a coordinator address "
              f"(${ENV_COORDINATOR} or --coordinator-address)", file=sys.stderr)
        return EXIT_BAD_INPUT
    where = f" [process {process_id} of {num_processes}]" if num_processes > 1 else ""
    try:
        store = open_store(store_url, lease_ttl=lease_ttl)
        if store.is_built(run_hash):
            print(f"runix build: {run_hash[:12]} is built (cache hit){where}", flush=True)
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
        if process_id != 0:
            return _follow(store, run_hash, name, parent_dir, data_root, show_progress, num_processes, process_id,
                           coordinator)
        work = store.begin_build(run_hash, timeout=lease_wait)
    except StoreError as err:
        print(f"runix build: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if work is None:
        if store.is_built(run_hash):
            print(f"runix build: {name} ({run_hash[:12]}) was built by another builder", flush=True)
            return EXIT_OK
        print(f"runix build: gave up after {lease_wait:.0f} s waiting for {store.lease_holder(run_hash)}, which is "
              f"building {name} ({run_hash[:12]})", file=sys.stderr)
        return EXIT_FAILED
    with work:
        state = "resuming" if work.resumed else "building"
        print(f"runix build: {state} {name} ({run_hash[:12]}) in {work.path}{where}", flush=True)
        if not _shards_from_store(work.path, data_root, store):
            return EXIT_BAD_INPUT
        command = trainer_command(work.path, parent_dir, data_root, show_progress, num_processes, 0, coordinator)
        code = _train_syncing(command, work)
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


def _train_syncing(command: list[str], work) -> int:
    """Run the trainer; meanwhile copy each checkpoint it finishes into the store (object stores)."""
    trainer = subprocess.Popen(command)
    stop = threading.Event()

    def sync() -> None:
        while not stop.wait(SYNC_EVERY_S):
            try:
                work.sync_checkpoints()
            except OSError as err:  # a failed copy is retried at the next tick; the local checkpoint stands
                print(f"runix build: warning: copying checkpoints into the store failed: {err}", file=sys.stderr)

    copier = threading.Thread(target=sync, name="checkpoint-sync", daemon=True)
    copier.start()
    try:
        code = trainer.wait()
    finally:
        stop.set()
        copier.join()
    if code != EXIT_OK:
        try:
            work.sync_checkpoints()  # keep what the failed run reached, for the next try on any machine
        except OSError:
            pass
    return code


def _follow(store, run_hash: str, name: str, parent_dir, data_root, show_progress, num_processes: int,
            process_id: int, coordinator: str) -> int:
    """Process k > 0: train alongside process 0 in the shared build folder; never lease, never publish."""
    work = store.prepare_follower(run_hash)
    print(f"runix build: process {process_id} of {num_processes} of {name} ({run_hash[:12]}) in {work.path}",
          flush=True)
    if not _shards_from_store(work.path, data_root, store):
        return EXIT_BAD_INPUT
    command = trainer_command(work.path, parent_dir, data_root, show_progress, num_processes, process_id, coordinator)
    code = subprocess.call(command)
    if code != EXIT_OK:
        print(f"runix build: {name} process {process_id} failed with exit code {code}", file=sys.stderr)
    return code


def _shards_from_store(run_dir: Path, data_root: str | None, store) -> bool:
    """The run's file and TFDS sources' token shards from the store into the data root (tokenized once if absent).

    So the trainer reads only shards: `runix lock` published them, and any
    host that shares the store URL copies them instead of tokenizing.
    """
    from runtime.data_source import shards_from_store
    from runtime.errors import BadInput

    try:
        names = shards_from_store(run_dir, data_root, store)
    except BadInput as err:
        print(f"runix build: error: {err}", file=sys.stderr)
        return False
    if names:
        print(f"runix build: token shards of {', '.join(names)} from {store.url}", flush=True)
    return True


def _complete(run_dir: Path) -> bool:
    from runtime.digest import read_digest

    try:
        return read_digest(run_dir / "digest.json").complete
    except (OSError, ValueError, KeyError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return build(args.store, args.run_hash, args.data_root, show_progress=not args.no_progress,
                 num_processes=args.num_processes, process_id=args.process_id, coordinator=args.coordinator_address,
                 lease_ttl=args.lease_ttl, lease_wait=args.lease_wait)


if __name__ == "__main__":
    sys.exit(main())
