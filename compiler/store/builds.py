"""Building an entry: take the run's lock, prepare its folder, publish it whole, marker last.

    build = begin_build(store, run, lock_entries, plan)   # None: already built
    ... the runtime writes checkpoints/, metrics, digest.json into build.path ...
    finish_build(store, run.hash)                         # manifest, publish, COMPLETE.json last

A killed build resumes: its folder stays under .building/ (checkpoints
included) and the next begin_build of that hash continues in it.
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
from compiler.store.gc import remove
from compiler.store.layout import COMPLETE_FILE, LOCK_FILE, MANIFEST_FILE, PLAN_FILE, SPEC_FILE, STORE_FORMAT, spec_document

if TYPE_CHECKING:
    from compiler.store.core import Store


@dataclasses.dataclass
class Build:
    """A build in progress, holding the run's build lock until finish or abort."""

    store: Store
    hash: str
    name: str
    path: pathlib.Path  # local folder the runtime writes into
    resumed: bool  # the folder held a previous, interrupted build of the same run

    def finish(self) -> str:
        return self.store.finish_build(self.hash)

    def abort(self, discard: bool = False) -> None:
        self.store.abort_build(self.hash, discard=discard)

    def __enter__(self) -> Build:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.hash in self.store.held:  # not finished: keep the folder so a retry resumes
            self.store.abort_build(self.hash)


def begin_build(store: Store, run, lock_entries: Mapping[str, Any] | None = None,
                plan: Mapping[str, Any] | None = None, *, wait: bool = True, timeout: float | None = None) -> Build | None:
    """Take the build lock of `run` and prepare its build folder (see Store.begin_build)."""
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
        return None
    try:
        if store.is_built(run_hash):
            lock.release()
            return None
        path = store.building_path(run_hash, name)
        _recover_incomplete(store, run_hash, name, path)
        resumed = (path / SPEC_FILE).is_file()
        path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path / SPEC_FILE, document)
        write_json_atomic(path / LOCK_FILE, dict(lock_entries))
        if plan is not None:
            write_json_atomic(path / PLAN_FILE, dict(plan))
    except BaseException:
        lock.release()
        raise
    store.held[run_hash] = (lock, name)
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
        remove(store, final)


def finish_build(store: Store, run_hash: str) -> str:
    """Manifest every file, publish the folder as `<hash>-<name>/`, write the marker last."""
    if run_hash not in store.held:
        raise StoreError(store.url, f"run {run_hash} is not being built by this process (call begin_build first)")
    lock, name = store.held[run_hash]
    building = store.building_path(run_hash, name)
    spec = json.loads((building / SPEC_FILE).read_text(encoding="utf-8"))
    if spec.get("hash") != run_hash:
        raise StoreError(str(building), f"{SPEC_FILE} names run {spec.get('hash')}, not {run_hash}")
    manifest = {"format": STORE_FORMAT, "files": local_manifest(building)}
    write_json_atomic(building / MANIFEST_FILE, manifest)
    manifest_sha256 = hashlib.sha256((building / MANIFEST_FILE).read_bytes()).hexdigest()
    final = store.entry_path(run_hash, name)
    if store.fs.exists(final):  # left over by a crash; never a built entry (we hold the lock and checked)
        remove(store, final)
    if store.is_local:
        os.replace(building, final)
    else:
        remote = store.remote_building_path(run_hash, name)
        if store.fs.exists(remote):
            store.fs.rm(remote, recursive=True)
        for rel in sorted([*manifest["files"], MANIFEST_FILE]):
            store.fs.makedirs(posixpath.dirname(posixpath.join(remote, rel)), exist_ok=True)
            store.fs.put_file(str(building / rel), posixpath.join(remote, rel))
        store.fs.mv(remote, final, recursive=True)
    marker = {"hash": run_hash, "name": name, "manifest_sha256": manifest_sha256, "format": STORE_FORMAT}
    _write_marker(store, final, marker)
    del store.held[run_hash]
    lock.release()
    if not store.is_local:
        shutil.rmtree(building, ignore_errors=True)
    return final


def abort_build(store: Store, run_hash: str, discard: bool = False) -> None:
    """Release the build lock; keep the folder for a resume unless `discard`."""
    lock, name = store.held.pop(run_hash)
    try:
        if discard:
            shutil.rmtree(store.building_path(run_hash, name), ignore_errors=True)
    finally:
        lock.release()


def _write_marker(store: Store, final: str, marker: dict[str, Any]) -> None:
    data = json.dumps(marker, indent=2, sort_keys=True).encode() + b"\n"
    if store.is_local:
        write_bytes_atomic(pathlib.Path(final) / COMPLETE_FILE, data)
    else:
        store.fs.pipe_file(posixpath.join(final, COMPLETE_FILE), data)
