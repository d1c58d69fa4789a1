"""Registered derivations: what a build job given only a hash starts from (Nix: a .drv).

`<root>/.derivations/<hash>-<name>/` holds spec.json, lock.json and plan.json.
The launcher registers every run it lowers; the job (`python -m runtime.build
--store URL --hash HASH`, possibly on another machine) reads it back, and
refuses one whose files no longer hash to its name.
"""

from __future__ import annotations

import json
import pathlib
import posixpath
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from compiler.store.entries import registered
from compiler.store.errors import StoreError
from compiler.store.files import json_bytes, write_bytes_atomic
from compiler.store.layout import (
    DERIVATIONS_DIR, LOCK_FILE, PLAN_FILE, SPEC_FILE, UnsafePath, check_hash, entry_name, spec_document,
)
from compiler.store.verify import derivation_problem

if TYPE_CHECKING:
    from compiler.store.core import Store


def checked(store: Store, run_hash: str, name: str) -> tuple[str, str]:
    """(hash, name) after checking both make a store path, before any I/O."""
    try:
        entry_name(run_hash, name)
    except UnsafePath as err:
        raise StoreError(store.url, f"refusing a store path outside the store: {err}") from None
    return run_hash, name


def register(store: Store, run, lock_entries: Mapping[str, Any], plan: Mapping[str, Any] | None = None) -> str:
    """Write the run's derivation; registering twice is harmless (the content is named by the hash)."""
    run_hash, name = checked(store, run.hash, run.name)
    document = spec_document(run_hash, name, run.parent_hash, run.spec.model_dump(mode="json"))
    problem = derivation_problem(run_hash, name, document, dict(lock_entries))
    if problem:
        raise StoreError(store.url, f"refusing to register run {name}: {problem}")
    folder = store.join(DERIVATIONS_DIR, entry_name(run_hash, name))
    files = {LOCK_FILE: dict(lock_entries), **({PLAN_FILE: dict(plan)} if plan is not None else {}),
             SPEC_FILE: document}  # spec.json last: its presence means "registered"
    for filename, value in files.items():
        if store.is_local:
            pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(pathlib.Path(folder) / filename, json_bytes(value))
        else:
            store.fs.pipe_file(posixpath.join(folder, filename), json_bytes(value))
    return folder


def derivation(store: Store, run_hash: str) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """(name, spec.json, lock.json, plan.json or None) of a registered run; StoreError if absent or damaged."""
    check_hash(run_hash)
    found = [name for h, name in registered(store) if h == run_hash]
    if not found:
        raise StoreError(store.url, f"run {run_hash} is not registered in the store (the launcher registers "
                                    f"runs before their build jobs start)")
    folder = store.join(DERIVATIONS_DIR, entry_name(run_hash, found[0]))
    try:
        spec = json.loads(store.fs.cat_file(posixpath.join(folder, SPEC_FILE)))
        lock = json.loads(store.fs.cat_file(posixpath.join(folder, LOCK_FILE)))
        plan_path = posixpath.join(folder, PLAN_FILE)
        plan = json.loads(store.fs.cat_file(plan_path)) if store.fs.exists(plan_path) else None
    except (FileNotFoundError, ValueError) as err:
        raise StoreError(folder, f"damaged derivation: {err}") from None
    problem = derivation_problem(run_hash, found[0], spec, lock)
    if problem:
        raise StoreError(folder, f"damaged or tampered derivation: {problem}")
    return found[0], spec, lock, plan
