"""Content digests (sha256) of files, folders and JSON values.

Every prepared data artifact (corpus, tokenizer, token shard) is named and
pinned by what it contains, never by when or where it was made, so that the
compiler's lock can say exactly which bytes a run trained on and a replay can
refuse anything else. This module is the one place that decides how those
digests are computed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(value: Any) -> bytes:
    """The one byte serialization of a JSON value that digests are taken over.

    Sorted keys, no insignificant whitespace, UTF-8: two equal values always
    give the same bytes, whatever order their keys were built in.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_json(value: Any) -> str:
    """Hex sha256 of `canonical_json(value)`."""
    return sha256_bytes(canonical_json(value))


def tree_files(root: str | os.PathLike[str]) -> list[str]:
    """Paths of all regular files under `root`, relative, '/'-separated, sorted."""
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            found.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(found)


def sha256_tree(
    root: str | os.PathLike[str], exclude: frozenset[str] = frozenset()
) -> dict[str, str]:
    """{relative path: sha256} of every file under `root` except `exclude`."""
    root = Path(root)
    return {rel: sha256_file(root / rel) for rel in tree_files(root) if rel not in exclude}


def digest_of_files(files: Mapping[str, str]) -> str:
    """One digest for a set of files given as {relative path: sha256}."""
    return sha256_json({"files": dict(files)})
