"""Garbage collection: remove what nothing needs, keep the rest, and say why each kept thing stays.

Kept (the roots, then everything their parents reach, by hash):
  * the runs of the spec sets the user names (`keep`),
  * every registered derivation of a run not built yet — a queued or
    running build job on some machine starts from it, and needs its parent,
  * every build in progress whose lease is held (a builder is writing it).
Removed: built entries, incomplete publishes, derivations of built runs and
abandoned build folders (no live lease, no derivation) that no root reaches.
A complete entry is unpublished (marker first) only after checking it is not
reachable; an entry whose lease is live is never touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import posixpath
import shutil
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from compiler.store.entries import has_marker, ls
from compiler.store.errors import EntryInfo
from compiler.store.layout import COMPLETE_FILE, DERIVATIONS_DIR, TRASH_DIR, check_hash, entry_name

if TYPE_CHECKING:
    from compiler.store.core import Store


@dataclasses.dataclass(frozen=True)
class GcResult:
    removed: list[EntryInfo]
    kept: list[tuple[EntryInfo, str]]  # (entry, why it stays)


def collect(store: Store, keep: Iterable[str], *, dry_run: bool = False) -> GcResult:
    """Remove every entry no root reaches (see the module docstring); with dry_run, only say what would go."""
    entries = ls(store)
    built = {e.hash for e in entries if e.status == "built"}
    parents = {e.hash: e.parent_hash for e in entries if e.parent_hash}
    why: dict[str, str] = {}
    for run_hash in keep:
        if run_hash:
            why.setdefault(check_hash(run_hash), "in a kept spec set")
    building = {e.hash for e in entries if e.status == "building"}
    for run_hash, _ in _registered_all(store):
        if run_hash not in built:
            building.add(run_hash)
    for run_hash in sorted(building):  # a lease held anywhere: some machine is writing this run
        if _lease_is_live(store, run_hash):
            why.setdefault(run_hash, "being built (its lease is held)")
    for run_hash, _ in _registered_all(store):
        if run_hash not in built:
            why.setdefault(run_hash, "registered and not built yet (a queued build job starts from it)")
    frontier = list(why)
    while frontier:
        current = frontier.pop()
        parent = parents.get(current)
        if parent and parent not in why:
            why[parent] = f"parent of {current[:12]}, which is kept"
            frontier.append(parent)
    removed, kept = [], []
    for entry in entries:
        if entry.hash in why:
            kept.append((entry, why[entry.hash]))
            continue
        if entry.status == "registered":
            continue  # its derivation goes below, with the built entry that replaced it
        if entry.status == "building" and not _take_for_removal(store, entry, dry_run):
            kept.append((entry, "being built (its lease is held)"))
            continue
        if not dry_run and entry.status in ("built", "incomplete"):
            remove(store, store.entry_path(entry.hash, entry.name))
        removed.append(entry)
    for run_hash, name in _registered_all(store):  # derivations of built runs follow their entries
        if run_hash not in why and not dry_run and run_hash not in store.held:
            with contextlib.suppress(FileNotFoundError):
                store.fs.rm(store.join(DERIVATIONS_DIR, entry_name(run_hash, name)), recursive=True)
    return GcResult(removed, kept)


def gc(store: Store, keep: Iterable[str], *, dry_run: bool = False) -> list[EntryInfo]:
    """What `collect` removed (or, with dry_run, would remove)."""
    return collect(store, keep, dry_run=dry_run).removed


def _registered_all(store: Store) -> list[tuple[str, str]]:
    from compiler.store.entries import registered

    return registered(store)


def _lease_is_live(store: Store, run_hash: str) -> bool:
    if run_hash in store.held:
        return True
    lease = store.lock_for(run_hash)
    if not lease.acquire(wait=False):
        return True
    lease.release()
    return False


def _take_for_removal(store: Store, entry: EntryInfo, dry_run: bool) -> bool:
    """Remove an abandoned build folder while holding its lease; False if a builder holds it."""
    if entry.hash in store.held:
        return False
    lease = store.lock_for(entry.hash)
    if not lease.acquire(wait=False):
        return False
    try:
        if not dry_run:
            shutil.rmtree(store.building_path(entry.hash, entry.name), ignore_errors=True)
            if not store.is_local:
                with contextlib.suppress(FileNotFoundError):
                    store.fs.rm(store.remote_building_path(entry.hash, entry.name), recursive=True)
    finally:
        lease.release()
    return True


def remove(store: Store, path: str) -> None:
    """Unpublish first (rename to .trash, or drop the marker), then delete."""
    if store.is_local:
        trash = pathlib.Path(store.join(TRASH_DIR))
        trash.mkdir(parents=True, exist_ok=True)
        target = trash / f"{posixpath.basename(path)}.{uuid.uuid4().hex}"
        os.replace(path, target)
        shutil.rmtree(target, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            store.fs.rm(posixpath.join(path, COMPLETE_FILE))
        store.fs.rm(path, recursive=True)


def remove_incomplete(store: Store, run_hash: str, name: str) -> bool:
    """Remove a published folder that has no marker; never a complete entry. True if removed."""
    if has_marker(store, run_hash, name):
        return False
    remove(store, store.entry_path(run_hash, name))
    return True
