"""Eval results in the store, by eval hash: built once, verified, replayable.

Layout, beside the runs (a run's folder is `<store>/<hash>-<name>/`):

    <store>/evals/.derivations/<eval hash>-<run>.<set>.<step>.json   what an eval job starts from
    <store>/evals/<eval hash>-<run>.<set>.<step>/eval.json           the derivation record (hashed document + labels)
                                                  /result.json         the metrics, with the float32 bits they came from
                                                  /COMPLETE.json       sha256 of both files; written last

Why a folder of its own and not a run entry: an eval is a derivation of a
run's checkpoint, not a run; it has no checkpoints, spec or lock of its own,
and many evals share one run. The guarantees are the run store's: a folder
is published by one rename, the marker is written last (a half-written eval
is never taken for a built one), `verify` re-hashes both files and re-derives
the eval hash from eval.json. Two evaluators of one eval compute the same
bytes, so a lost race costs a duplicate computation, never a wrong entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import posixpath
import uuid
from typing import Any

from compiler.evals import EvalDerivation, eval_hash
from compiler.store import Store, StoreError
from compiler.store.layout import check_hash, check_name, entry_name, parse_entry_name

EVALS_DIR = "evals"
DERIVATIONS = ".derivations"
STAGING = ".building"
EVAL_FILE, RESULT_FILE, COMPLETE_FILE = "eval.json", "result.json", "COMPLETE.json"


def _dumps(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


class EvalStore:
    """The evals of one store (compiler.store.Store)."""

    def __init__(self, store: Store):
        self.store = store
        self.fs = store.fs
        self.root = posixpath.join(store.root, EVALS_DIR)

    # ------------------------------------------------------------------ paths and queries

    def _entry(self, hash_: str, name: str) -> str:
        return posixpath.join(self.root, entry_name(check_hash(hash_), check_name(name)))

    def _listing(self, folder: str) -> list[str]:
        try:
            return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(folder, detail=False))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def entries(self) -> list[tuple[str, str]]:
        """(hash, name) of every published eval folder."""
        return [parsed for parsed in map(parse_entry_name, self._listing(self.root)) if parsed]

    def find(self, hash_: str) -> str | None:
        for found, name in self.entries():
            if found == hash_:
                return name
        return None

    def is_built(self, hash_: str) -> bool:
        name = self.find(hash_)
        return name is not None and self.fs.exists(posixpath.join(self._entry(hash_, name), COMPLETE_FILE))

    def built(self) -> set[str]:
        return {h for h, name in self.entries() if self.fs.exists(posixpath.join(self._entry(h, name), COMPLETE_FILE))}

    # ------------------------------------------------------------------ derivations

    def register(self, derivation: EvalDerivation, lock_entries: dict[str, Any]) -> str:
        """Write what an eval job needs (`python -m runtime.evaluate --store URL --hash H`)."""
        path = posixpath.join(self.root, DERIVATIONS, entry_name(derivation.hash, derivation.name) + ".json")
        self._write(path, _dumps({**derivation.record(), "lock": lock_entries}))
        return path

    def derivation(self, hash_: str) -> dict[str, Any]:
        """The registered derivation of an eval; StoreError if absent or tampered."""
        check_hash(hash_)
        folder = posixpath.join(self.root, DERIVATIONS)
        for filename in self._listing(folder):
            parsed = parse_entry_name(filename.removesuffix(".json"))
            if parsed and parsed[0] == hash_:
                path = posixpath.join(folder, filename)
                try:
                    record = json.loads(self.fs.cat_file(path))
                except ValueError as err:
                    raise StoreError(path, f"damaged eval derivation: {err}") from None
                if eval_hash(record.get("document", {})) != hash_:
                    raise StoreError(path, "eval derivation does not hash to its name (tampered)")
                return record
        raise StoreError(self.store.url, f"eval {hash_} is not registered in the store")

    # ------------------------------------------------------------------ results

    def publish(self, record: dict[str, Any], result: dict[str, Any]) -> str:
        """Publish a finished eval atomically: both files, then one rename, then the marker."""
        hash_, name = record["hash"], record["name"]
        if eval_hash(record["document"]) != hash_:
            raise StoreError(self.store.url, f"eval record {name} does not hash to {hash_}")
        final = self._entry(hash_, name)
        if self.is_built(hash_):
            return final
        files = {EVAL_FILE: _dumps(record), RESULT_FILE: _dumps(result)}
        marker = {"hash": hash_, "name": name, "files": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}}
        stage = posixpath.join(self.root, STAGING, f"{entry_name(hash_, name)}.{uuid.uuid4().hex}")
        for filename, data in files.items():
            self._write(posixpath.join(stage, filename), data)
        if self.fs.exists(final):  # a publish cut short before its marker: never a built eval
            self.fs.rm(final, recursive=True)
        if self.store.is_local:
            os.replace(stage, final)
        else:
            self.fs.mv(stage, final, recursive=True)
        self._write(posixpath.join(final, COMPLETE_FILE), _dumps(marker))
        return final

    def read(self, hash_: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(eval.json, result.json) of a built eval, verified first; StoreError if damaged."""
        name = self.find(hash_)
        if name is None or not self.is_built(hash_):
            raise StoreError(self.store.url, f"eval {hash_} is not built")
        problems = self.verify(hash_)
        path = self._entry(hash_, name)
        if problems:
            raise StoreError(path, "eval entry fails verification: " + "; ".join(problems))
        return (json.loads(self.fs.cat_file(posixpath.join(path, EVAL_FILE))),
                json.loads(self.fs.cat_file(posixpath.join(path, RESULT_FILE))))

    def verify(self, hash_: str) -> list[str]:
        """Problems of a built eval ([] when intact): marker, file hashes, and eval.json's own hash."""
        name = self.find(hash_)
        if name is None:
            return [f"eval {hash_} is not in the store"]
        path = self._entry(hash_, name)
        try:
            marker = json.loads(self.fs.cat_file(posixpath.join(path, COMPLETE_FILE)))
        except FileNotFoundError:
            return [f"{COMPLETE_FILE} is missing: the eval was never completed"]
        except ValueError:
            return [f"{COMPLETE_FILE} is not valid JSON"]
        problems = []
        if marker.get("hash") != hash_ or marker.get("name") != name:
            problems.append(f"{COMPLETE_FILE} names another eval")
        for filename in (EVAL_FILE, RESULT_FILE):
            try:
                data = self.fs.cat_file(posixpath.join(path, filename))
            except FileNotFoundError:
                problems.append(f"{filename}: missing")
                continue
            if hashlib.sha256(data).hexdigest() != (marker.get("files") or {}).get(filename):
                problems.append(f"{filename}: content differs from {COMPLETE_FILE}")
            elif filename == EVAL_FILE and eval_hash(json.loads(data).get("document", {})) != hash_:
                problems.append(f"{EVAL_FILE}: its document does not hash to {hash_[:12]}")
        return problems

    def records(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(eval.json, result.json) of every built eval (unverified reads for listings and reports)."""
        out = []
        for hash_, name in self.entries():
            path = self._entry(hash_, name)
            try:
                if not self.fs.exists(posixpath.join(path, COMPLETE_FILE)):
                    continue
                out.append((json.loads(self.fs.cat_file(posixpath.join(path, EVAL_FILE))),
                            json.loads(self.fs.cat_file(posixpath.join(path, RESULT_FILE)))))
            except (FileNotFoundError, ValueError):
                continue
        return out

    # ------------------------------------------------------------------ io

    def _write(self, path: str, data: bytes) -> None:
        if self.store.is_local:
            target = pathlib.Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
            temporary.write_bytes(data)
            os.replace(temporary, target)
        else:
            self.fs.pipe_file(path, data)
