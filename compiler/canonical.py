"""Canonical serialization and the run hash.

The hash is sha256 over canonical JSON (sorted keys, no whitespace, shortest
round-trip floats, -0.0 folded into 0.0) of:
  * the schema version,
  * the fully resolved run (compiler.resolve) minus fields marked NOT_HASHED (compiler.spec)
    (name, description, tags, checkpoint cadence, preset label),
  * the parent's hash in place of its name (a child's hash contains its
    parents', transitively, as in Nix),
  * the locked inputs of the run (data and tokenizer digests, runtime
    software and numerics facts) once a lockfile provides them; an input
    pinned by content then enters by its digest alone, not by its URI
    (`_address_by_content`), so moved bytes keep their hashes.
Nothing else: not file layout, key order, comments, store or launcher.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from compiler.spec import SCHEMA_VERSION, ParentInit, RunSpec

TFDS_PREFIX = "tfds://"


def hashed_view(value: Any) -> Any:
    """Plain JSON data of a spec value, without the fields that cannot change the trained bits."""
    if isinstance(value, BaseModel):
        out = {}
        for name, field in type(value).model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            hashed = extra.get("x-runix-hashed", True)
            if hashed == "when-set" and getattr(value, name) is None:
                continue  # an option at its default: absent, so hashes from before the option existed stand
            if hashed:
                out[name] = hashed_view(getattr(value, name))
        return out
    if isinstance(value, Mapping):
        return {str(key): hashed_view(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [hashed_view(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float):
        return 0.0 if value == 0 else value
    return value


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def hash_document(resolved: RunSpec, parent_hash: str | None, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the run hash is computed over (also what `runix diff` compares)."""
    run = hashed_view(resolved)
    if isinstance(resolved.init, ParentInit):
        run["init"] = {"kind": "parent", "parent": parent_hash, "optimizer_state": resolved.init.optimizer_state}
    if inputs:
        _address_by_content(run, inputs)
    return {"runix_schema": SCHEMA_VERSION, "run": run, "inputs": dict(inputs or {})}


def _address_by_content(run: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    """Drop the location of every input the lock pinned by content: its digest stands for it.

    A source's bytes enter the hash as its locked digest (with the reader
    options, which are spec fields), so moving or copying them to another
    folder or bucket changes no hash; a tokenizer likewise. Kept: the URI of
    an unresolved input (nothing else names it) and of a `tfds://` source
    (its split, e.g. train[:10%], selects within the locked files).
    """
    sources = inputs.get("sources") or {}
    for name, source in (run.get("data", {}).get("sources") or {}).items():
        locked = sources.get(name) or {}
        if "digest" in locked and not str(source.get("uri", "")).startswith(TFDS_PREFIX):
            source.pop("uri", None)
    if "digest" in (inputs.get("tokenizer") or {}):
        run.get("data", {}).pop("tokenizer", None)


def run_hash(resolved: RunSpec, parent_hash: str | None, inputs: Mapping[str, Any] | None = None) -> str:
    document = hash_document(resolved, parent_hash, inputs)
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()
