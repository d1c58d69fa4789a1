"""Canonical serialization and the run hash.

The hash is sha256 over canonical JSON (sorted keys, no whitespace, shortest
round-trip floats, -0.0 folded into 0.0) of:
  * the schema version,
  * the fully resolved run (compiler.resolve) minus fields marked NOT_HASHED (compiler.spec)
    (name, description, tags, checkpoint cadence, preset label),
  * the parent's hash in place of its name (a child's hash contains its
    parents', transitively, as in Nix),
  * the locked inputs of the run (data and tokenizer digests, runtime
    software and numerics facts) once a lockfile provides them.
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
    return {"runix_schema": SCHEMA_VERSION, "run": run, "inputs": dict(inputs or {})}


def run_hash(resolved: RunSpec, parent_hash: str | None, inputs: Mapping[str, Any] | None = None) -> str:
    document = hash_document(resolved, parent_hash, inputs)
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()
