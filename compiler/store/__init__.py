"""The store: built runs by hash, as Nix keeps built derivations.

    store = Store(".runix/store")                   # or "memory://…", "gs://bucket/store"
    build = store.begin_build(run, lock.entries_for(run), plan)   # None: already built
    if build is not None:
        train(build.path)                           # the runtime writes checkpoints/, metrics, digest.json
        store.finish_build(run.hash)                # manifest, rename into place, marker last

    # A launcher and a build job on another machine split this in two:
    store.register(run, lock.entries_for(run), plan)   # launcher: the run's derivation, by hash
    build = store.begin_build(run_hash)                 # job: only the hash (and the store URL)

One module per job:
  layout        names, files and the path checks that keep every path inside the store
  entries       reading: which entries exist, their state, their files, local copies
  derivations   registered runs a build job starts from (a Nix .drv)
  builds        begin, finish (publish, marker last) and abort a build
  leases        one builder per hash
  verify        re-hash an entry against its manifest
  gc            remove what the kept runs do not reach
  files         atomic local writes and the manifest of a folder
  connect       bounded client settings, and one look at a bucket before anything is written
  core          `Store`: the URL, filesystem and paths each of the above works on

Guarantees:
  * A half-written entry is never taken for a built one: an entry is built only
    when its COMPLETE.json marker exists, and the marker is written last, after
    the manifest and the rename. `verify` re-hashes every file of the manifest.
  * One builder per hash: `begin_build` takes an exclusive lock (fcntl.flock on
    local stores: released by the kernel if the builder dies, so a crash never
    leaves a stale lock). A second launcher of the same run waits for the lock
    (or, with wait=False, returns at once) and then finds the run built and
    skips it.
  * A killed build resumes: its folder stays under .building/ (checkpoints
    included) and the next begin_build of that hash continues in it.

Local and remote stores. Training writes orbax checkpoints to a local folder,
so a run is always built in a local folder: for a local store it is
`<root>/.building/<hash>-<name>/` itself; for any other fsspec URL it is a
local staging folder, and finish_build uploads the finished files to
`<root>/.building/<hash>-<name>/`, moves them to `<root>/<hash>-<name>/` and
writes the marker last. Locks on non-local stores are lock objects created
with exclusive-create (`open(..., "xb")`), atomic on the local and memory
filesystems; object stores without conditional writes make this best-effort,
so launch one builder per run there (XManager's job identity does) — a lost
race costs a duplicate build, never a corrupt entry, because a complete
entry is only ever replaced by the marker of an identical build.
The memory filesystem ("memory://") is the test double of a remote store.
"""

from __future__ import annotations

import pathlib

from compiler.store.builds import Build
from compiler.store.core import Store
from compiler.store.errors import EntryInfo, StoreError

DEFAULT_STORE = ".runix/store"
DEFAULT_DATA_ROOT = ".runix/data"
"""Relative to the project root (compiler.lock.project_root); `--store URL` overrides it."""

__all__ = ["DEFAULT_DATA_ROOT", "DEFAULT_STORE", "Build", "EntryInfo", "Store", "StoreError", "default_data_root",
           "default_store_url", "open_store"]


def open_store(url: str, staging: str | None = None) -> Store:
    """A Store whose bucket answered one listing; StoreError (exit 2) naming why not, in bounded time."""
    from compiler.store.connect import probe

    store = Store(url, staging)
    probe(store)
    return store


def default_store_url(project_root: pathlib.Path | None) -> str:
    return str((project_root or pathlib.Path.cwd()) / DEFAULT_STORE)


def default_data_root(project_root: pathlib.Path | None) -> pathlib.Path:
    """Where `runix lock` prepares built-in data and where launch and replay read it."""
    return (project_root or pathlib.Path.cwd()) / DEFAULT_DATA_ROOT
