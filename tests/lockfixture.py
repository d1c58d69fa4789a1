"""Lockfiles for spec sets that tests write, made cheaply.

compile, hash and launch refuse a spec set without a fresh lock, so a test
that edits or writes specs locks them first, in one of two ways:

* `lock_like(paths, shipped)`: the inputs of a shipped lockfile (same URIs,
  same digests), with the spec set re-recorded for `paths` — exactly what
  `runix lock` writes when the data has not changed, without re-resolving the
  built-in corpora (which would prepare them). Refuses runs whose inputs the
  shipped lock does not hold.
* `with_file_inputs(text, data)` + `lock(paths)`: point a spec's sources and
  tokenizer at small local files and lock them for real, offline and without
  token counts (`runix lock --offline --no-token-counts`: hashing a few files).

A test that calls compiler.lock.build_lock itself, with no I/O at all, passes
`FixedResolver()` and `FIXED_ENVIRONMENT`: every digest derived from its URI,
one environment on every machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pathlib
import re
from collections.abc import Sequence

from compiler.lock import (
    Lock, default_lockfile, read_lock, relative_spec_paths, spec_record, spec_set_root, write_lock,
)
from compiler.resolve_inputs import Resolution
from compiler.specset import load_spec_set
from tests.conftest import REPO
from tests.tokenizer_fixture import write_tokenizer_json

TINY_LOCK = REPO / "lockfiles" / "tiny.lock.json"

FIXED_ENVIRONMENT = {"runtime": {"python": "3.11.7", "jax": "0.10.2"}, "numerics": {"cpu": {"isa": ["avx2"]}}}


class FixedResolver:
    """Each source and tokenizer locked to a digest of its URI (and vocab size); no token counts."""

    def source(self, uri):
        return Resolution(locked={"type": "fixed", "digest": hashlib.sha256(uri.encode()).hexdigest()})

    def tokenizer(self, uri, vocab_size):
        return Resolution(locked={"type": "fixed", "digest": hashlib.sha256(f"{uri}{vocab_size}".encode()).hexdigest()})

    def token_count(self, *args):
        return None


def lock_like(paths: Sequence[str | os.PathLike[str]], shipped: pathlib.Path = TINY_LOCK,
              lockfile: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Write the lock of `paths` from a shipped lockfile's inputs; return its path."""
    unlocked = load_spec_set(paths)
    record = spec_record(unlocked, relative_spec_paths(paths, spec_set_root(paths)))
    data = read_lock(shipped).model_dump(mode="json")
    data["spec_set"] = record.model_dump(mode="json")
    lock = Lock.model_validate(data)  # every run's inputs must have an entry in the shipped lock
    path = pathlib.Path(lockfile) if lockfile is not None else default_lockfile(paths)
    write_lock(path, lock)
    return path


def write_data(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Small local stand-ins for the built-in corpora and a tokenizer file."""
    data = {}
    for name in ("code", "markup", "text", "code-adjacent"):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "part-0.txt").write_text(f"{name} document\n")
        data[name] = folder
    data["tokenizer"] = write_tokenizer_json(root / "tokenizer.json")
    return data


def with_file_inputs(text: str, data: dict[str, pathlib.Path]) -> str:
    """A spec whose builtin:// sources read `data`'s folders and whose runs use its tokenizer file."""
    text = re.sub(r'"builtin://([a-z-]+)"', lambda m: f'"file://{data[m.group(1)]}"', text)
    return text.replace("    data:\n", f'    data:\n      tokenizer: "file://{data["tokenizer"]}"\n')


def lock(paths: Sequence[str | os.PathLike[str]], *extra: str) -> pathlib.Path:
    """`runix lock PATH... --offline --no-token-counts` in this process; the lockfile's path."""
    from compiler.cli import main

    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(["lock", *map(str, paths), "--offline", "--no-token-counts", *extra])
    assert code == 0, out.getvalue() + err.getvalue()
    return default_lockfile(paths)
