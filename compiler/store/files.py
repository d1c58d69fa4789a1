"""Writing a file so that a reader sees all of it or none of it, and listing a folder's files with their digests.

Local folders get temp-file + fsync + rename (rename is atomic on one
filesystem). Object stores have no rename: a single-object PUT is already
all-or-nothing, so `put_bytes` writes the object in one request and the
store's ordering (files, then manifest, then marker) does the rest.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any

from compiler.resolve_inputs import sha256_stream
from compiler.store.errors import StoreError
from compiler.store.layout import NOT_IN_MANIFEST


def json_bytes(value: Any) -> bytes:
    """The store's one JSON spelling: sorted keys, indented, UTF-8, newline at the end."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def write_bytes_atomic(path: pathlib.Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes 0600
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def write_json_atomic(path: pathlib.Path, value: Any) -> None:
    write_bytes_atomic(path, json_bytes(value))


def local_manifest(folder: pathlib.Path) -> dict[str, dict[str, Any]]:
    """{relative path: {sha256, size}} of every file under `folder` (manifest and marker left out)."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(folder).as_posix()
        if rel in NOT_IN_MANIFEST:
            continue
        if path.is_symlink():
            raise StoreError(str(path), "store entries may not contain symbolic links")
        sha, size = sha256_stream(lambda: open(path, "rb"))
        files[rel] = {"sha256": sha, "size": size}
    return files
