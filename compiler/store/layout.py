"""The store's on-disk layout: names, files, and the checks that keep paths inside it.

    <root>/
      <hash>-<name>/            a complete entry (Nix: /nix/store/<hash>-<name>)
        spec.json               {"hash", "name", "parent_hash", "spec": resolved RunSpec} — what the runtime reads
        lock.json               the run's slice of the lockfile (compiler.lock.Lock.entries_for)
        plan.json               the run's plan (steps, tokens, cost), when the launcher gives one
        checkpoints/            orbax checkpoints (written by the runtime)
        metrics.jsonl           per-step metrics (runtime)
        digest.json             per-step loss bits and final parameter sha256 (runtime; replay compares it)
        manifest.json           size + sha256 of every file above, written when the build finishes
        COMPLETE.json           written last: {"hash", "name", "manifest_sha256"}; no marker = not built
      .derivations/<hash>-<name>/  spec.json, lock.json, plan.json of runs registered by a launcher, so
                                a build job given only the hash can start (Nix: a .drv)
      .building/<hash>-<name>/  builds in progress (kept after a crash so the next build resumes)
      .locks/<hash>.lock        build locks (one builder per hash at a time); never deleted
      .trash/                   entries being removed (renamed here first, so removal is atomic)
      .shards/<key>/            token shards of file and TFDS sources, one per (content, reader, tokenizer)
                                (compiler.store.shards; not runs: ls, verify and gc leave them alone)

Every path the store touches is built from a validated hash (64 hex), a
validated run name (compiler.spec.RUN_NAME_PATTERN: no '/', no '..') and
relative file names checked by `safe_relative`; nothing read from the store
(a manifest, a directory listing) can send a read or a delete outside it.
"""

from __future__ import annotations

import re
from typing import Any

from compiler.spec import HASH_PATTERN, RUN_NAME_PATTERN

SPEC_FILE = "spec.json"
LOCK_FILE = "lock.json"
PLAN_FILE = "plan.json"
CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
DIGEST_FILE = "digest.json"
MANIFEST_FILE = "manifest.json"
COMPLETE_FILE = "COMPLETE.json"

BUILDING_DIR = ".building"
DERIVATIONS_DIR = ".derivations"
LOCKS_DIR = ".locks"
TRASH_DIR = ".trash"

NOT_IN_MANIFEST = frozenset({MANIFEST_FILE, COMPLETE_FILE})
STORE_FORMAT = 1

_HASH = re.compile(HASH_PATTERN)
_NAME = re.compile(RUN_NAME_PATTERN)
_ENTRY = re.compile(r"^([0-9a-f]{64})-(.+)$")
HASH_PREFIX = re.compile(r"^[0-9a-f]{6,64}$")


class UnsafePath(ValueError):
    """A name or relative path that could leave the store (or is not one the store makes)."""


def check_hash(value: str) -> str:
    if not isinstance(value, str) or not _HASH.match(value):
        raise UnsafePath(f"not a run hash (64 lowercase hex digits): {value!r}")
    return value


def check_name(value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or value in (".", ".."):
        raise UnsafePath(f"not a run name (letters, digits, '.', '_', '-'; no '/'): {value!r}")
    return value


def entry_name(run_hash: str, name: str) -> str:
    """`<hash>-<name>`, after checking both parts."""
    return f"{check_hash(run_hash)}-{check_name(name)}"


def parse_entry_name(dirname: str) -> tuple[str, str] | None:
    """(hash, name) of a store folder name, or None for anything the store did not make."""
    match = _ENTRY.match(dirname)
    if not match:
        return None
    run_hash, name = match.groups()
    try:
        check_name(name)
    except UnsafePath:
        return None
    return run_hash, name


def safe_relative(rel: str) -> str:
    """A '/'-separated path inside an entry: not absolute, no '..', no empty or '.' parts."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel or "\x00" in rel:
        raise UnsafePath(f"not a relative path inside a store entry: {rel!r}")
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafePath(f"path leaves its store entry or is not normalized: {rel!r}")
    return rel


def spec_document(run_hash: str, name: str, parent_hash: str | None, spec: dict[str, Any]) -> dict[str, Any]:
    """spec.json: exactly what the runtime reads to train `run_hash`."""
    return {"hash": check_hash(run_hash), "name": check_name(name), "parent_hash": parent_hash, "spec": spec}
