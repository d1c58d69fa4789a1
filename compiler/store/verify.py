"""Checking a built entry against its manifest: every file re-hashed, nothing added, the hash still its own.

A problem list names each damaged file, so `runix store verify` can say
exactly what was tampered with; [] means intact.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import TYPE_CHECKING, Any

from compiler.resolve_inputs import sha256_stream
from compiler.store.entries import find, resolve
from compiler.store.errors import StoreError
from compiler.store.layout import (
    COMPLETE_FILE, LOCK_FILE, MANIFEST_FILE, NOT_IN_MANIFEST, SPEC_FILE, UnsafePath, entry_name, safe_relative,
)

if TYPE_CHECKING:
    from compiler.store.core import Store


def verify(store: Store, run_hash: str) -> list[str]:
    """Re-hash every file of a built entry against its manifest; [] when intact.

    Also checks the marker pins the manifest, that no file was added, and
    that spec.json + lock.json still hash to the entry's own hash.
    """
    run_hash = resolve(store, run_hash)
    found = find(store, run_hash)
    if found is None:
        raise StoreError(store.url, f"run {run_hash} is not in the store (only a build in progress)")
    path = store.entry_path(*found)
    problems: list[str] = []
    try:
        marker_bytes = store.fs.cat_file(posixpath.join(path, COMPLETE_FILE))
    except FileNotFoundError:
        return [f"{COMPLETE_FILE} is missing: the entry was never completed"]
    try:
        marker = json.loads(marker_bytes)
        manifest_bytes = store.fs.cat_file(posixpath.join(path, MANIFEST_FILE))
    except FileNotFoundError:
        return [f"{MANIFEST_FILE} is missing"]
    except ValueError:
        return [f"{COMPLETE_FILE} is not valid JSON"]
    if not isinstance(marker, dict) or marker.get("hash") != run_hash or marker.get("name") != found[1]:
        problems.append(f"{COMPLETE_FILE} names another run than {entry_name(*found)}")
    if not isinstance(marker, dict) or marker.get("manifest_sha256") != hashlib.sha256(manifest_bytes).hexdigest():
        problems.append(f"{MANIFEST_FILE} was modified (its sha256 differs from the one in {COMPLETE_FILE})")
    try:
        manifest = json.loads(manifest_bytes)["files"]
        assert isinstance(manifest, dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        return [*problems, f"{MANIFEST_FILE} is not a valid manifest"]
    on_disk = set(files_under(store, path))
    for rel in sorted(manifest):
        try:
            safe_relative(rel)
        except UnsafePath:
            problems.append(f"{MANIFEST_FILE} names a path outside the entry: {rel!r}")
            continue
        expected = manifest[rel]
        if rel not in on_disk:
            problems.append(f"{rel}: missing")
            continue
        sha, size = sha256_stream(lambda: store.fs.open(posixpath.join(path, rel), "rb"))
        if not isinstance(expected, dict) or sha != expected.get("sha256") or size != expected.get("size"):
            want = expected if isinstance(expected, dict) else {}
            problems.append(f"{rel}: content differs from the manifest (sha256 {sha[:16]}…, {size} bytes; "
                            f"expected {str(want.get('sha256'))[:16]}…, {want.get('size')} bytes)")
    for rel in sorted(on_disk - set(manifest) - NOT_IN_MANIFEST):
        problems.append(f"{rel}: not in the manifest (added after the build finished)")
    if not problems:
        problems += _check_spec_hash(store, path, run_hash, found[1])
    return problems


def files_under(store: Store, path: str) -> list[str]:
    """Every file below `path`, relative to it."""
    base = path.rstrip("/") + "/"
    try:
        found = store.fs.find(path)
    except FileNotFoundError:
        return []
    return sorted(p[len(base):] if p.startswith(base) else p for p in found)


def derivation_problem(run_hash: str, name: str, spec: Any, lock: Any) -> str | None:
    """Why spec.json + lock.json are not the run `run_hash` (None when they hash to it).

    A lock.json without `inputs` (a run stored without a lock) is checked by
    name and hash fields only.
    """
    from compiler.canonical import run_hash as compute_hash
    from compiler.spec import RunSpec

    if not isinstance(spec, dict) or spec.get("hash") != run_hash or spec.get("name") != name:
        got = (spec.get("hash"), spec.get("name")) if isinstance(spec, dict) else None
        return f"{SPEC_FILE} names run {got}, not {run_hash}/{name}"
    if not isinstance(lock, dict) or "inputs" not in lock:
        return None
    try:
        recomputed = compute_hash(RunSpec.model_validate(spec["spec"]), spec.get("parent_hash"), lock["inputs"])
    except Exception as err:  # noqa: BLE001 - any unreadable spec is damage
        return f"{SPEC_FILE}: not a valid run spec ({type(err).__name__})"
    if recomputed != run_hash:
        return f"{SPEC_FILE}/{LOCK_FILE}: hash to {recomputed}, not to the run's hash"
    return None


def _check_spec_hash(store: Store, path: str, run_hash: str, name: str) -> list[str]:
    """spec.json + lock.json must still hash to the entry's hash."""
    try:
        spec = json.loads(store.fs.cat_file(posixpath.join(path, SPEC_FILE)))
        lock = json.loads(store.fs.cat_file(posixpath.join(path, LOCK_FILE)))
    except FileNotFoundError as err:
        return [f"{posixpath.basename(str(err.filename or SPEC_FILE))}: missing"]
    except ValueError:
        return [f"{SPEC_FILE} or {LOCK_FILE} is not valid JSON"]
    problem = derivation_problem(run_hash, name, spec, lock)
    return [problem] if problem else []
