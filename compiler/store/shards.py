"""Token shards as store entries: one tokenization per content address, shared by every host of the store.

    <root>/.shards/<key>/           tokens.npy, offsets.npy, shard.json, build.json (dataprep.shards' layout)
                      COMPLETE.json  written last: {"key", "files": {name: {sha256, size}}, "published_by"}
    <root>/.shards/.locks/<key>.lock | <key>.lease.<epoch>   one publisher per key (compiler.store.leases)

A shard's key is sha256 of (source content digest + reader options, tokenizer
digest) — dataprep.external.shard_destination — so two runs, two processes or
two machines that read the same locked bytes with the same tokenizer name the
same entry, and whoever finds it published only copies it. This module is the
store's half and knows nothing of tokens: it publishes a finished local
folder (each file, then the marker, as a run entry is published: a rename on a
local store, conditional creates on a bucket), says whether a key is
published, and copies a published one into a local folder. The double-checked
"download, else lease, look again, build, publish" lives with the data code
(dataprep.store_shards), which imports this lazily.

Shards are not runs: `store ls`, `verify` and `gc` list entries by
`<hash>-<name>` and leave `.shards/` alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import posixpath
import shutil
import socket
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from compiler.resolve_inputs import sha256_stream
from compiler.store.errors import StoreError
from compiler.store.files import json_bytes, write_bytes_atomic
from compiler.store.layout import COMPLETE_FILE, check_hash
from compiler.store.leases import BuildLock, LocalLock, ObjectLease, create_exclusive

if TYPE_CHECKING:
    from compiler.store.core import Store

SHARDS_DIR = ".shards"
LOCKS = ".locks"


def shard_path(store: Store, key: str) -> str:
    return store.join(SHARDS_DIR, check_hash(key))


def is_published(store: Store, key: str) -> bool:
    """True when the shard's marker exists (written after every file of it)."""
    return store.fs.exists(posixpath.join(shard_path(store, key), COMPLETE_FILE))


def marker(store: Store, key: str) -> dict[str, Any] | None:
    """The published shard's marker, or None when it is not published."""
    try:
        return json.loads(store.fs.cat_file(posixpath.join(shard_path(store, key), COMPLETE_FILE)))
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise StoreError(shard_path(store, key), f"unreadable {COMPLETE_FILE}: {err}") from None


def published_keys(store: Store) -> list[str]:
    """Keys of every published shard (one listing, then one marker check each)."""
    try:
        names = sorted(posixpath.basename(p.rstrip("/")) for p in store.fs.ls(store.join(SHARDS_DIR), detail=False))
    except (FileNotFoundError, NotADirectoryError):
        return []
    keys = []
    for name in names:
        with contextlib.suppress(ValueError):
            if is_published(store, check_hash(name)):
                keys.append(name)
    return keys


def lease(store: Store, key: str) -> BuildLock:
    """The shard's publish lock: flock on a local store, a conditional-write lease object on a bucket."""
    if store.is_local:
        return LocalLock(pathlib.Path(store.join(SHARDS_DIR, LOCKS, f"{check_hash(key)}.lock")))
    return ObjectLease(store.fs, store.join(SHARDS_DIR, LOCKS), check_hash(key), ttl=store.lease_ttl)


@contextlib.contextmanager
def held(store: Store, key: str, timeout: float | None = None) -> Iterator[BuildLock]:
    """Hold the shard's publish lock for the block; StoreError after `timeout` seconds of waiting."""
    lock = lease(store, key)
    if not lock.acquire(wait=True, timeout=timeout):
        raise StoreError(shard_path(store, key), f"gave up after {timeout:.0f} s waiting for {lock.holder()}, "
                                                 f"which is publishing this token shard")
    try:
        yield lock
    finally:
        lock.release()


def publish(store: Store, key: str, folder: pathlib.Path, lock: BuildLock) -> dict[str, Any]:
    """Publish the local shard `folder` as `.shards/<key>/`, marker last; the caller holds `lock` (from `held`).

    A folder left without marker by a publish that was cut short is removed
    first (nobody else can be writing it: we hold the lock). Returns the marker.
    """
    if is_published(store, key):
        return marker(store, key) or {}
    files = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        sha, size = sha256_stream(lambda: open(path, "rb"))
        files[path.name] = {"sha256": sha, "size": size}
    record = {"key": key, "files": files, "published_by": f"{socket.gethostname()} pid {os.getpid()}"}
    final = shard_path(store, key)
    if not lock.still_held():
        raise StoreError(final, "the publish lease of this token shard expired and another publisher took it over")
    if store.is_local:
        stage = pathlib.Path(store.join(SHARDS_DIR, f".publish-{key}-{uuid.uuid4().hex[:8]}"))
        stage.mkdir(parents=True)
        try:
            for name in files:
                _link_or_copy(folder / name, stage / name)
            if pathlib.Path(final).exists():
                shutil.rmtree(final)
            os.replace(stage, final)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        write_bytes_atomic(pathlib.Path(final) / COMPLETE_FILE, json_bytes(record))
        return record
    if store.fs.exists(final):
        store.fs.rm(final, recursive=True)
    for name in files:
        try:
            store.fs.put_file(str(folder / name), posixpath.join(final, name), mode="create")
        except FileExistsError:
            raise StoreError(final, f"{name} already exists: another publisher is writing this shard") from None
    if not create_exclusive(store.fs, posixpath.join(final, COMPLETE_FILE), json_bytes(record)):
        raise StoreError(final, f"{COMPLETE_FILE} already exists: another publisher completed this shard first")
    return record


def download(store: Store, key: str, folder: pathlib.Path) -> dict[str, Any]:
    """Copy every file the published shard's marker lists into the (empty, local) `folder`; returns the marker.

    Each file's size and sha256 are checked against the marker, so a damaged
    object is an error naming it, never a shard a run would read.
    """
    record = marker(store, key)
    if record is None:
        raise StoreError(shard_path(store, key), "token shard is not published in the store")
    source = shard_path(store, key)
    for name, expected in sorted(record.get("files", {}).items()):
        if "/" in name or name.startswith("."):
            raise StoreError(source, f"refusing a shard file name that is not a plain name: {name!r}")
        target = folder / name
        if store.is_local:
            _link_or_copy(pathlib.Path(source) / name, target)
        else:
            store.fs.get_file(posixpath.join(source, name), str(target))
        sha, size = sha256_stream(lambda: open(target, "rb"))
        if (sha, size) != (expected.get("sha256"), expected.get("size")):
            raise StoreError(posixpath.join(source, name),
                             f"has {size} bytes, sha256 {sha}, but the shard's {COMPLETE_FILE} records "
                             f"{expected.get('size')} bytes, sha256 {expected.get('sha256')}; the store entry is damaged")
    return record


def _link_or_copy(source: pathlib.Path, target: pathlib.Path) -> None:
    """A hard link when both are on one filesystem (a shard is never modified in place), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
