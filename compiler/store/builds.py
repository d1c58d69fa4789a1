"""Building an entry: take the run's lease, prepare its folder, publish it whole, marker last.

    build = begin_build(store, run, lock_entries, plan)   # None: already built
    ... the runtime writes checkpoints/, metrics, digest.json into build.path ...
    finish_build(store, run.hash)                         # manifest, publish, COMPLETE.json last

Local stores build in `<root>/.building/<hash>-<name>/` and publish with one
rename. Object stores have no rename: a build trains in a local staging
folder, its checkpoints are copied into `<root>/.building/<hash>-<name>/` as
they are made (compiler.store.staging), and publishing writes each file of the
entry with a conditional create (S3 `If-None-Match: *`, GCS
`ifGenerationMatch=0`), then manifest.json, then COMPLETE.json, also
conditionally. So a reader never sees an entry without all its files, and a
builder that lost a race (its lease was taken over while it stalled) cannot
overwrite, let alone delete, a file of the winner's entry: its first
conditional write fails and it stops.

A killed build resumes: locally its folder stays under .building/; on an
object store the next builder, on any machine, pulls the newest checkpoint
copied there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import posixpath
import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from compiler.store.derivations import checked, derivation
from compiler.store.entries import has_marker
from compiler.store.errors import StoreError
from compiler.store.files import local_manifest, write_bytes_atomic, write_json_atomic
from compiler.store.gc import remove_incomplete
from compiler.store.layout import COMPLETE_FILE, LOCK_FILE, MANIFEST_FILE, PLAN_FILE, SPEC_FILE, STORE_FORMAT, spec_document
from compiler.store.leases import create_exclusive
from compiler.store.staging import CheckpointSync

if TYPE_CHECKING:
    from compiler.store.core import Store


@dataclasses.dataclass
class Build:
    """A build in progress, holding the run's build lease until finish or abort."""

    store: Store
    hash: str
    name: str
    path: pathlib.Path  # local folder the runtime writes into
    resumed: bool  # the folder held (or was given from the store) a previous, interrupted build of the same run

    def finish(self) -> str:
        return self.store.finish_build(self.hash)

    def abort(self, discard: bool = False) -> None:
        self.store.abort_build(self.hash, discard=discard)

    def sync_checkpoints(self) -> list[int]:
        """Copy finished checkpoints into the store (object stores; a local store holds them already)."""
        if self.store.is_local:
            return []
        return CheckpointSync(self.store, self.hash, self.name, self.path).push()

    def __enter__(self) -> Build:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.hash in self.store.held:  # not finished: keep the folder so a retry resumes
            self.store.abort_build(self.hash)


def begin_build(store: Store, run, lock_entries: Mapping[str, Any] | None = None,
                plan: Mapping[str, Any] | None = None, *, wait: bool = True, timeout: float | None = None) -> Build | None:
    """Take the build lease of `run` and prepare its build folder (see Store.begin_build)."""
    if isinstance(run, str):
        run_hash = run
        if store.is_built(run_hash):
            return None
        name, document, lock_entries, plan = derivation(store, run_hash)
    else:
        run_hash, name = checked(store, run.hash, run.name)
        document = spec_document(run_hash, name, run.parent_hash, run.spec.model_dump(mode="json"))
        if lock_entries is None:
            raise TypeError("begin_build(run) needs the run's lock entries (compiler.lock.Lock.entries_for)")
    if store.is_built(run_hash):
        return None
    if run_hash in store.held:
        raise StoreError(store.url, f"run {name} ({run_hash[:12]}) is already being built by this process")
    lock = store.lock_for(run_hash)
    if not lock.acquire(wait=wait, timeout=timeout):
        store.last_holder[run_hash] = lock.holder()
        return None
    try:
        if store.is_built(run_hash):
            lock.release()
            return None
        path = store.building_path(run_hash, name)
        _recover_incomplete(store, run_hash, name, path)
        path.mkdir(parents=True, exist_ok=True)
        pulled = None if store.is_local else CheckpointSync(store, run_hash, name, path).pull()
        resumed = (path / SPEC_FILE).is_file() or pulled is not None
        write_json_atomic(path / SPEC_FILE, document)
        write_json_atomic(path / LOCK_FILE, dict(lock_entries))
        if plan is not None:
            write_json_atomic(path / PLAN_FILE, dict(plan))
    except BaseException:
        lock.release()
        raise
    store.held[run_hash] = (lock, name)
    return Build(store, run_hash, name, path, resumed)


def prepare_follower(store: Store, run_hash: str) -> Build:
    """The build folder of a process other than 0 of a multi-process build: no lease, never published.

    It gets the same spec.json, lock.json and plan.json as process 0's (the
    derivation's), so the trainer reads the same run; it writes only its own
    checkpoint shards there.
    """
    name, document, lock_entries, plan = derivation(store, run_hash)
    path = store.building_path(run_hash, name)
    path.mkdir(parents=True, exist_ok=True)
    resumed = (path / SPEC_FILE).is_file()
    write_json_atomic(path / SPEC_FILE, document)
    write_json_atomic(path / LOCK_FILE, dict(lock_entries))
    if plan is not None:
        write_json_atomic(path / PLAN_FILE, dict(plan))
    return Build(store, run_hash, name, path, resumed)


def _recover_incomplete(store: Store, run_hash: str, name: str, building: pathlib.Path) -> None:
    """A published folder without marker (a crash inside finish_build) goes back to building."""
    final = store.entry_path(run_hash, name)
    if not store.fs.exists(final) or has_marker(store, run_hash, name):
        return
    if store.is_local and not building.exists():
        building.parent.mkdir(parents=True, exist_ok=True)
        os.replace(final, building)
    else:
        remove_incomplete(store, run_hash, name)


def finish_build(store: Store, run_hash: str) -> str:
    """Manifest every file, publish the entry as `<hash>-<name>/`, write the marker last."""
    if run_hash not in store.held:
        raise StoreError(store.url, f"run {run_hash} is not being built by this process (call begin_build first)")
    lock, name = store.held[run_hash]
    building = store.building_path(run_hash, name)
    spec = json.loads((building / SPEC_FILE).read_text(encoding="utf-8"))
    if spec.get("hash") != run_hash:
        raise StoreError(str(building), f"{SPEC_FILE} names run {spec.get('hash')}, not {run_hash}")
    final = store.entry_path(run_hash, name)
    if has_marker(store, run_hash, name):  # built meanwhile by another builder: leave its entry alone
        _done(store, run_hash, lock, building)
        return final
    if not lock.still_held():
        raise StoreError(store.url, f"the build lease of {name} ({run_hash[:12]}) expired and another builder took "
                                    f"it over; not publishing next to it (the build folder stays for a retry)")
    manifest = {"format": STORE_FORMAT, "files": local_manifest(building)}
    write_json_atomic(building / MANIFEST_FILE, manifest)
    manifest_sha256 = hashlib.sha256((building / MANIFEST_FILE).read_bytes()).hexdigest()
    marker = {"hash": run_hash, "name": name, "manifest_sha256": manifest_sha256, "format": STORE_FORMAT}
    if store.is_local:
        if store.fs.exists(final):  # a publish cut short by a crash (no marker: checked above, we hold the lock)
            remove_incomplete(store, run_hash, name)
        os.replace(building, final)
        write_bytes_atomic(pathlib.Path(final) / COMPLETE_FILE, _marker_bytes(marker))
    else:
        _publish_objects(store, building, final, [*sorted(manifest["files"]), MANIFEST_FILE], marker)
    _done(store, run_hash, lock, building)
    return final


def _publish_objects(store: Store, building: pathlib.Path, final: str, files: list[str], marker: dict) -> None:
    """Each file with a conditional create, manifest after the files, the marker last (also conditional)."""
    for rel in files:
        try:
            store.fs.put_file(str(building / rel), posixpath.join(final, rel), mode="create")
        except FileExistsError:
            raise StoreError(final, f"{rel} already exists: another builder is publishing this entry; "
                                    f"leaving it alone") from None
    if not create_exclusive(store.fs, posixpath.join(final, COMPLETE_FILE), _marker_bytes(marker)):
        raise StoreError(final, f"{COMPLETE_FILE} already exists: another builder completed this entry first")


def _done(store: Store, run_hash: str, lock, building: pathlib.Path) -> None:
    name = store.held.pop(run_hash)[1]
    try:
        if not store.is_local:
            CheckpointSync(store, run_hash, name, building).discard()
            shutil.rmtree(building, ignore_errors=True)
    finally:
        lock.release()


def abort_build(store: Store, run_hash: str, discard: bool = False) -> None:
    """Release the build lease; keep the folder (and the store's checkpoint copies) for a resume unless `discard`."""
    lock, name = store.held.pop(run_hash)
    try:
        if discard:
            shutil.rmtree(store.building_path(run_hash, name), ignore_errors=True)
            if not store.is_local:
                CheckpointSync(store, run_hash, name, store.building_path(run_hash, name)).discard()
    finally:
        lock.release()


def _marker_bytes(marker: dict[str, Any]) -> bytes:
    return json.dumps(marker, indent=2, sort_keys=True).encode() + b"\n"
