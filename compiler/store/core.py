"""`Store`: one store URL, its filesystem, its paths; each operation lives in its own module.

The class holds what every part needs (the fsspec filesystem, the root, the
local staging folder, the builds this process holds) and hands each call to
the module that does that job: entries (reading), derivations (register),
builds (begin/finish/abort), verify, gc, leases.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import posixpath
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from compiler.store import builds, connect, derivations, entries, gc, verify
from compiler.store.errors import EntryInfo, StoreError
from compiler.store.leases import BuildLock, FsspecLock, LocalLock
from compiler.store.layout import BUILDING_DIR, LOCKS_DIR, check_hash, entry_name, safe_relative


class Store:
    def __init__(self, url: str | os.PathLike[str], staging: str | os.PathLike[str] | None = None):
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        self.url = str(url)
        try:
            self.fs, root = fsspec.core.url_to_fs(self.url, **connect.storage_options(self.url))
        except (ImportError, ValueError) as err:  # an unknown protocol, or its filesystem package missing
            raise StoreError(self.url, f"cannot open the store: {err}") from None
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.root = root.rstrip("/") or "/"
        if self.is_local:
            self.root = str(pathlib.Path(self.root).resolve())
        if staging is None and not self.is_local:
            staging = pathlib.Path(tempfile.gettempdir()) / "runix-staging" / hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.staging = pathlib.Path(staging) if staging is not None else None
        self.held: dict[str, tuple[BuildLock, str]] = {}  # run hash → (its lock, its name), builds of this process

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # ------------------------------------------------------------------ paths

    def join(self, *parts: str) -> str:
        for part in parts:
            safe_relative(part)
        return posixpath.join(self.root, *parts)

    def entry_path(self, run_hash: str, name: str) -> str:
        return self.join(entry_name(run_hash, name))

    def building_path(self, run_hash: str, name: str) -> pathlib.Path:
        """The local folder where this run is (or would be) built."""
        if self.is_local:
            return pathlib.Path(self.join(BUILDING_DIR, entry_name(run_hash, name)))
        return self.staging / entry_name(run_hash, name)

    def remote_building_path(self, run_hash: str, name: str) -> str:
        return self.join(BUILDING_DIR, entry_name(run_hash, name))

    def lock_for(self, run_hash: str) -> BuildLock:
        path = self.join(LOCKS_DIR, f"{check_hash(run_hash)}.lock")
        if self.is_local:
            return LocalLock(pathlib.Path(path))
        return FsspecLock(self.fs, path)

    # ------------------------------------------------------------------ reading (compiler.store.entries)

    def find(self, run_hash: str) -> tuple[str, str] | None:
        return entries.find(self, run_hash)

    def is_built(self, run_hash: str) -> bool:
        found = entries.find(self, run_hash)
        return found is not None and entries.has_marker(self, *found)

    def built_hashes(self) -> set[str]:
        """Hashes of every built entry, from one listing (what `compile` marks as built)."""
        return {h for h, name in entries.published(self) if entries.has_marker(self, h, name)}

    def entry(self, run_hash: str) -> str:
        return entries.entry(self, run_hash)

    def resolve(self, prefix: str) -> str:
        return entries.resolve(self, prefix)

    def ls(self) -> list[EntryInfo]:
        return entries.ls(self)

    def read_json(self, run_hash: str, filename: str, *, verify: bool = True) -> Any:
        return entries.read_json(self, run_hash, filename, verify=verify)

    def build_path_of(self, run_hash: str) -> pathlib.Path | None:
        """The local folder of a build in progress of `run_hash` (what the runtime trains in), or None."""
        check_hash(run_hash)
        for found_hash, name in entries.building(self):
            if found_hash == run_hash:
                return self.building_path(found_hash, name)
        return None

    def local_copy(self, run_hash: str) -> pathlib.Path:
        return entries.local_copy(self, run_hash)

    # ------------------------------------------------------------------ verification (compiler.store.verify)

    def verify(self, run_hash: str) -> list[str]:
        return verify.verify(self, run_hash)

    def _files_under(self, path: str) -> list[str]:
        return verify.files_under(self, path)

    # ------------------------------------------------------------------ building (derivations, builds)

    def register(self, run, lock_entries: Mapping[str, Any], plan: Mapping[str, Any] | None = None) -> str:
        return derivations.register(self, run, lock_entries, plan)

    def derivation(self, run_hash: str) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any] | None]:
        return derivations.derivation(self, run_hash)

    def begin_build(self, run, lock_entries: Mapping[str, Any] | None = None, plan: Mapping[str, Any] | None = None,
                    *, wait: bool = True, timeout: float | None = None) -> builds.Build | None:
        """Take the build lock of `run` and prepare its build folder.

        run: a compiler.specset.CompiledRun (with its lock entries and plan),
          or the hash of a run registered with `register` (what a build job has).
        Returns None when the run is built (already, or by another builder
        while we waited). With wait=False, also None when another builder
        holds the lock right now. The folder gets spec.json, lock.json and
        plan.json; an interrupted build of the same run is resumed in place.
        """
        return builds.begin_build(self, run, lock_entries, plan, wait=wait, timeout=timeout)

    def finish_build(self, run_hash: str) -> str:
        return builds.finish_build(self, run_hash)

    def abort_build(self, run_hash: str, discard: bool = False) -> None:
        builds.abort_build(self, run_hash, discard)

    # ------------------------------------------------------------------ garbage collection (compiler.store.gc)

    def gc(self, keep: Iterable[str], *, dry_run: bool = False) -> list[EntryInfo]:
        return gc.gc(self, keep, dry_run=dry_run)
