"""Reading the store: which entries exist, in which state, and their files.

An entry is built exactly when its completion marker exists; a published
folder without one is "incomplete" (a publish cut short) and is never read
as a build. Every name comes from a listing parsed by
`layout.parse_entry_name`, so nothing the store holds can send a read
outside it.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shutil
from typing import TYPE_CHECKING, Any

from compiler.resolve_inputs import sha256_stream
from compiler.store.errors import EntryInfo, StoreError
from compiler.store.files import write_json_atomic
from compiler.store.layout import (
    BUILDING_DIR, COMPLETE_FILE, DERIVATIONS_DIR, HASH_PREFIX, MANIFEST_FILE, SPEC_FILE, UnsafePath, check_hash,
    entry_name, parse_entry_name, safe_relative,
)

if TYPE_CHECKING:
    import pathlib

    from compiler.store.core import Store


def listing(store: Store, folder: str) -> list[str]:
    """Base names in `folder` of the store; [] when it does not exist."""
    try:
        return sorted(posixpath.basename(p.rstrip("/")) for p in store.fs.ls(folder, detail=False))
    except (FileNotFoundError, NotADirectoryError):
        return []


def published(store: Store, run_hash: str | None = None) -> list[tuple[str, str]]:
    """(hash, name) of every published folder (built or not) in the root."""
    found = []
    for dirname in listing(store, store.root):
        parsed = parse_entry_name(dirname)
        if parsed and (run_hash is None or parsed[0] == run_hash):
            found.append(parsed)
    return found


def building(store: Store) -> list[tuple[str, str]]:
    """(hash, name) of every build in progress: in the store's .building/ and in this machine's staging."""
    found = [parse_entry_name(d) for d in listing(store, store.join(BUILDING_DIR))]
    if not store.is_local and store.staging is not None and store.staging.is_dir():
        found += [parse_entry_name(p.name) for p in store.staging.iterdir()]
    return sorted({f for f in found if f})


def registered(store: Store) -> list[tuple[str, str]]:
    """(hash, name) of every registered derivation."""
    return sorted(filter(None, (parse_entry_name(d) for d in listing(store, store.join(DERIVATIONS_DIR)))))


def has_marker(store: Store, run_hash: str, name: str) -> bool:
    return store.fs.exists(posixpath.join(store.entry_path(run_hash, name), COMPLETE_FILE))


def find(store: Store, run_hash: str) -> tuple[str, str] | None:
    """(hash, name) of the published folder of `run_hash`, built or not (a built one first)."""
    check_hash(run_hash)
    entries = published(store, run_hash)
    built = [e for e in entries if has_marker(store, *e)]
    return (built or entries or [None])[0]


def resolve(store: Store, prefix: str) -> str:
    """The full hash of a built or building run from a unique prefix (≥ 6 hex digits)."""
    if not isinstance(prefix, str) or not HASH_PREFIX.match(prefix):
        raise StoreError(store.url, f"not a run hash or hash prefix (6-64 lowercase hex digits): {prefix!r}")
    known = {h for h, _ in published(store)} | {h for h, _ in building(store)}
    matches = sorted(h for h in known if h.startswith(prefix))
    if not matches:
        raise StoreError(store.url, f"run {prefix} is not in the store")
    if len(matches) > 1:
        raise StoreError(store.url, f"hash prefix {prefix} is ambiguous: {', '.join(m[:16] for m in matches)}")
    return matches[0]


def entry(store: Store, run_hash: str) -> str:
    """Path of the built entry of `run_hash`; StoreError if it is not built."""
    found = find(store, resolve(store, run_hash))
    if found is None or not has_marker(store, *found):
        state = "only partly published (no completion marker)" if found else "not in the store"
        raise StoreError(store.url, f"run {run_hash} is {state}")
    return store.entry_path(*found)


def parent_of(store: Store, entry_path: str) -> str | None:
    """The parent hash named by an entry's (or derivation's) spec.json, if readable and well-formed."""
    try:
        parent = json.loads(store.fs.cat_file(posixpath.join(entry_path, SPEC_FILE))).get("parent_hash")
    except (OSError, ValueError, AttributeError):
        return None
    try:
        return check_hash(parent) if parent is not None else None
    except UnsafePath:
        return None


def ls(store: Store) -> list[EntryInfo]:
    """Every entry: built, incomplete (published without marker), builds in progress, registered derivations."""
    out = []
    for run_hash, name in published(store):
        status = "built" if has_marker(store, run_hash, name) else "incomplete"
        path = store.entry_path(run_hash, name)
        out.append(EntryInfo(run_hash, name, status, path, parent_of(store, path)))
    for run_hash, name in building(store):
        out.append(EntryInfo(run_hash, name, "building", str(store.building_path(run_hash, name)), None))
    seen = {e.hash for e in out}
    for run_hash, name in registered(store):
        if run_hash not in seen:
            path = store.join(DERIVATIONS_DIR, entry_name(run_hash, name))
            out.append(EntryInfo(run_hash, name, "registered", path, parent_of(store, path)))
    return sorted(out, key=lambda e: (e.name, e.hash, e.status))


def read_json(store: Store, run_hash: str, filename: str, *, verify: bool = True) -> Any:
    """A JSON file of a built entry; verified first by default (a tampered entry is bad input, exit 2)."""
    from compiler.store.verify import verify as verify_entry

    path = entry(store, run_hash)
    if verify:
        problems = verify_entry(store, run_hash)
        if problems:
            raise StoreError(path, "store entry fails verification (tampered or damaged): " + "; ".join(problems))
    try:
        return json.loads(store.fs.cat_file(posixpath.join(path, safe_relative(filename))))
    except (FileNotFoundError, ValueError, UnsafePath) as err:
        raise StoreError(path, f"cannot read {filename}: {err}") from None


def local_copy(store: Store, run_hash: str) -> pathlib.Path:
    """A local folder holding the built entry (a parent's checkpoint for its child, a replay).

    A local store returns the entry itself; any other store downloads it
    once into the staging folder (`<staging>/.entries/<hash>-<name>/`),
    checking every file against the manifest, the marker copied last.
    """
    import pathlib

    path = entry(store, run_hash)
    if store.is_local:
        return pathlib.Path(path)
    run_hash, name = find(store, resolve(store, run_hash))
    target = store.staging / ".entries" / entry_name(run_hash, name)
    marker = json.loads(store.fs.cat_file(posixpath.join(path, COMPLETE_FILE)))
    done = target / COMPLETE_FILE
    if done.is_file() and json.loads(done.read_text()) == marker:
        return target
    manifest_bytes = store.fs.cat_file(posixpath.join(path, MANIFEST_FILE))
    if hashlib.sha256(manifest_bytes).hexdigest() != marker.get("manifest_sha256"):
        raise StoreError(path, f"{MANIFEST_FILE} was modified; the entry cannot be trusted")
    shutil.rmtree(target, ignore_errors=True)
    for rel, expected in sorted(json.loads(manifest_bytes)["files"].items()):
        local = target / safe_relative(rel)
        local.parent.mkdir(parents=True, exist_ok=True)
        store.fs.get_file(posixpath.join(path, rel), str(local))
        sha, size = sha256_stream(lambda: open(local, "rb"))
        if sha != expected.get("sha256") or size != expected.get("size"):
            shutil.rmtree(target, ignore_errors=True)
            raise StoreError(path, f"{rel}: content differs from the manifest; the entry is tampered or damaged")
    (target / MANIFEST_FILE).write_bytes(manifest_bytes)
    write_json_atomic(done, marker)  # last: a partial download is never reused
    return target
