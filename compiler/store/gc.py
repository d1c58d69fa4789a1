"""Garbage collection: remove every entry the kept runs do not reach, and removal itself.

A run's parent (by hash) is reachable from it. Builds in progress are
removed only when no builder holds their lock.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import posixpath
import shutil
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from compiler.store.entries import ls, registered
from compiler.store.errors import EntryInfo
from compiler.store.layout import COMPLETE_FILE, DERIVATIONS_DIR, TRASH_DIR, check_hash, entry_name

if TYPE_CHECKING:
    from compiler.store.core import Store


def gc(store: Store, keep: Iterable[str], *, dry_run: bool = False) -> list[EntryInfo]:
    """Remove every entry not reachable from `keep`; returns what was (or, with dry_run, would be) removed."""
    entries = ls(store)
    spec_parents = {e.hash: e.parent_hash for e in entries if e.status in ("built", "registered")}
    reachable: set[str] = set()
    frontier = [check_hash(h) for h in keep if h]
    while frontier:
        current = frontier.pop()
        if current in reachable:
            continue
        reachable.add(current)
        parent = spec_parents.get(current)
        if parent:
            frontier.append(parent)
    removed = []
    for run_hash, name in registered(store):  # derivations follow their runs
        if run_hash not in reachable and not dry_run and run_hash not in store.held:
            store.fs.rm(store.join(DERIVATIONS_DIR, entry_name(run_hash, name)), recursive=True)
    for entry in entries:
        if entry.hash in reachable:
            continue
        if entry.status == "registered":
            removed.append(entry)
            continue
        if entry.status == "built":
            if not dry_run:
                remove(store, store.entry_path(entry.hash, entry.name))
            removed.append(entry)
            continue
        # A build in progress, or a publish cut short: only when no builder holds its lock.
        lock = store.lock_for(entry.hash)
        if entry.hash in store.held or not lock.acquire(wait=False):
            continue
        try:
            if not dry_run and entry.status == "building":
                shutil.rmtree(store.building_path(entry.hash, entry.name), ignore_errors=True)
                if not store.is_local:
                    with contextlib.suppress(FileNotFoundError):
                        store.fs.rm(store.remote_building_path(entry.hash, entry.name), recursive=True)
            elif not dry_run:
                remove(store, store.entry_path(entry.hash, entry.name))
        finally:
            lock.release()
        removed.append(entry)
    return removed


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
