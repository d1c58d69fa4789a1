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
  staging       a bucket build's checkpoints, copied into the store so any machine resumes
  leases        one builder per hash: flock locally, conditional-write leases on buckets
  verify        re-hash an entry against its manifest
  gc            remove what the kept runs do not reach
  shards        token shards as entries of their own (`.shards/<key>/`): publish, download, their lease
  files         atomic local writes and the manifest of a folder
  connect       bounded client settings, and one look at a bucket before anything is written
  core          `Store`: the URL, filesystem and paths each of the above works on

Guarantees:
  * A half-written entry is never taken for a built one: an entry is built only
    when its COMPLETE.json marker exists, and the marker is written last, after
    the manifest and the rename. `verify` re-hashes every file of the manifest.
  * One builder per hash: `begin_build` takes the run's build lock — fcntl.flock
    on a local store (released by the kernel if the builder dies), a lease
    object taken with a conditional write on a bucket (S3 `If-None-Match: *`,
    GCS `ifGenerationMatch=0`; renewed by a heartbeat, taken over after expiry;
    compiler.store.leases). A second builder of the same run waits (bounded by
    its timeout) and then finds the run built and skips it.
  * A killed build resumes: locally its folder stays under .building/; on a
    bucket its checkpoints are copied into `<root>/.building/<hash>-<name>/`
    while it trains (compiler.store.staging), so a builder on any machine
    continues from the newest one.
  * The loser of a race never overwrites or deletes a complete entry: on a
    bucket every file of an entry is published with a conditional create,
    the marker last (compiler.store.builds).

Local and remote stores. Training writes orbax checkpoints to a local folder,
so a run is always built in a local folder: for a local store it is
`<root>/.building/<hash>-<name>/` itself (published with one rename); for any
other fsspec URL it is a local staging folder (`$TMPDIR/runix-staging/…`).
`s3://` and `gs://` stores are the real remote stores (s3fs, gcsfs); the
memory filesystem ("memory://") stays for unit tests.
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


def open_store(url: str, staging: str | None = None, *, lease_ttl: float | None = None) -> Store:
    """A Store whose bucket answered one listing; StoreError (exit 2) naming why not, in bounded time."""
    from compiler.store.connect import probe

    store = Store(url, staging, lease_ttl=lease_ttl)
    probe(store)
    return store


def default_store_url(project_root: pathlib.Path | None) -> str:
    return str((project_root or pathlib.Path.cwd()) / DEFAULT_STORE)


def default_data_root(project_root: pathlib.Path | None) -> pathlib.Path:
    """Where `runix lock` prepares built-in data and where launch and replay read it."""
    return (project_root or pathlib.Path.cwd()) / DEFAULT_DATA_ROOT
