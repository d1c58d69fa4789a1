"""Tokenization as a store derivation: a shard is built once per store and then only copied.

    shard = derive(store, destination, build)     # destination: <data root>/shards/<key>

`destination` is the content address of the shard in a data root
(dataprep.external.shard_destination: sha256 of the source's locked digest,
its reader options and the tokenizer digest), and the same key names its
entry in the store (compiler.store.shards: `<store>/.shards/<key>/`). In order:

  1. published in the store → copied into `destination` unless it is there
     already (a hard link on a local store); nothing is read from the source;
  2. else take the shard's publish lease (flock locally, a conditional-write
     lease object on a bucket: one publisher across machines), look again
     (a concurrent publisher may have finished while we waited: then 1),
  3. else `build()` (tokenize, under the data root's own lock; a shard already
     in the data root is opened, not rebuilt) and publish it, marker last.

So `runix lock` tokenizes a file source once into the store, and every build
of every run on every host that shares the store URL only downloads it.
Every tokenization is still logged in the data root where it ran
(dataprep.shards.tokenizations), which is how tests count them across hosts.

`store` is a compiler.store.Store; its module is imported lazily, as the
compiler imports dataprep lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dataprep.atomic_dir import building, exclusive
from dataprep.shards import TokenShard, open_shard, open_if_complete

DEFAULT_WAIT_S = 24 * 3600.0


def derive(store, destination: Path, build: Callable[[], TokenShard], *,
           timeout: float | None = DEFAULT_WAIT_S) -> TokenShard:
    """The shard at `destination`, from the store when published there, else built once and published."""
    from compiler.store import shards as stored  # noqa: PLC0415

    key = destination.name
    if stored.is_published(store, key):
        return fetch(store, destination)
    with stored.held(store, key, timeout) as lock:
        if stored.is_published(store, key):
            return fetch(store, destination)
        shard = build()
        stored.publish(store, key, shard.path, lock)
        return shard


def publish(store, shard: TokenShard, *, timeout: float | None = DEFAULT_WAIT_S) -> bool:
    """Publish a finished local shard into the store (no tokenization); False when it was published already."""
    from compiler.store import shards as stored  # noqa: PLC0415

    key = shard.path.name
    if stored.is_published(store, key):
        return False
    with stored.held(store, key, timeout) as lock:
        if stored.is_published(store, key):
            return False
        stored.publish(store, key, shard.path, lock)
        return True


def fetch(store, destination: Path) -> TokenShard:
    """The published shard `destination.name`, copied into `destination` once (others on this host wait, then open)."""
    from compiler.store import shards as stored  # noqa: PLC0415

    existing = open_if_complete(destination)
    if existing is not None:
        return existing
    with exclusive(destination):
        existing = open_if_complete(destination)
        if existing is not None:
            return existing
        with building(destination) as stage:
            stored.download(store, destination.name, stage)
    return open_shard(destination)
