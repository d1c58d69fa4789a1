"""The layout of a run directory and the compiler-written spec.json it starts from.

A run directory holds one training run:
  spec.json      written by the compiler: {"hash", "name", "parent_hash", "spec"}
                 where "spec" is the resolved RunSpec (model_dump(mode="json"))
  checkpoints/   orbax checkpoints (runtime.checkpoint)
  digest.json    the digest record (runtime.digest), rewritten at every checkpoint
  metrics.jsonl  one JSON line per step, for people and plots
  run.json       how the bits were computed: mesh layout, shardings, numerics facts
  timing.json    what the build measured of its cost: step time, compile, saves (runtime.timing)
  error.log      the traceback of a failed run (exit code 1), if any
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pydantic

from compiler.spec import RunSpec
from runtime.errors import BadInput

SPEC, CHECKPOINTS, DIGEST, METRICS, RUN_RECORD, ERROR_LOG, TIMING = (
    "spec.json", "checkpoints", "digest.json", "metrics.jsonl", "run.json", "error.log", "timing.json")
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """What spec.json says: the run's hash and name, its parent's hash (or None), the resolved spec."""

    hash: str
    name: str
    parent_hash: str | None
    spec: RunSpec


def paths(run_dir: str | os.PathLike[str]) -> dict[str, Path]:
    root = Path(run_dir)
    return {name: root / name for name in (SPEC, CHECKPOINTS, DIGEST, METRICS, RUN_RECORD, ERROR_LOG, TIMING)}


def load_request(run_dir: str | os.PathLike[str]) -> RunRequest:
    """Read and validate `<run_dir>/spec.json`; every problem is a BadInput that says what is wrong."""
    path = Path(run_dir) / SPEC
    if not path.is_file():
        raise BadInput(f"{path}: no spec.json (the compiler writes it into the run directory)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a JSON object with hash, name, parent_hash and spec")
    missing = [key for key in ("hash", "name", "spec") if key not in data]
    if missing:
        raise BadInput(f"{path}: missing {', '.join(missing)}")
    run_hash, parent_hash = data["hash"], data.get("parent_hash")
    if not isinstance(run_hash, str) or not _HASH_RE.match(run_hash):
        raise BadInput(f"{path}: hash must be 64 lowercase hex digits, got {run_hash!r}")
    if parent_hash is not None and (not isinstance(parent_hash, str) or not _HASH_RE.match(parent_hash)):
        raise BadInput(f"{path}: parent_hash must be null or 64 lowercase hex digits, got {parent_hash!r}")
    try:
        spec = RunSpec.model_validate(data["spec"])
    except pydantic.ValidationError as e:
        problems = "; ".join(f"spec.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise BadInput(f"{path}: invalid spec: {problems}") from None
    unresolved = [name for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff",
                                    "rotary_dim") if getattr(spec.model, name) is None]
    if unresolved or spec.steps is None or spec.schedule.unit != "steps":
        raise BadInput(f"{path}: spec is not resolved (write it with compiler.resolve.resolve_run); "
                       f"unset: {', '.join(unresolved) or 'steps or schedule in steps'}")
    if (spec.parent_ref is None) != (parent_hash is None):
        raise BadInput(f"{path}: init is {spec.init.kind!r} but parent_hash is {parent_hash!r}")
    return RunRequest(hash=run_hash, name=str(data["name"]), parent_hash=parent_hash, spec=spec)
