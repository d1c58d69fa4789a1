"""Helpers for the tests of the shipped spec sets (specs/): find them, load each once."""

from __future__ import annotations

import copy
import dataclasses
import functools
import pathlib

from compiler.resolve import resolve_run
from compiler.spec import RunSpec
from compiler.specset import SpecSet, compile_documents, read_documents, validated_runs

REPO = pathlib.Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"
TOKENS_PER_STEP_TO_CODE = 512 * 8192


def spec_sets() -> list[pathlib.Path]:
    """Every spec set shipped: each folder under specs/, and each folder that holds spec files itself."""
    folders = {path for path in SPECS.iterdir() if path.is_dir()}
    folders |= {path.parent for path in SPECS.rglob("*") if path.suffix in (".yaml", ".yml", ".json")}
    return sorted(folders)


def spec_files() -> list[pathlib.Path]:
    return sorted(path for path in SPECS.rglob("*") if path.suffix in (".yaml", ".yml", ".json"))


@functools.lru_cache(maxsize=None)
def compiled(folder: str) -> SpecSet:
    """The set under specs/<folder>, validated, resolved and hashed (no lockfile: spec-only hashes)."""
    return compile_documents(read_documents([SPECS / folder]))


@functools.lru_cache(maxsize=None)
def authored(folder: str) -> dict[str, RunSpec]:
    """Validated but unresolved runs (shares still shares), by name."""
    return {spec.name: spec for spec, _ in validated_runs(read_documents([SPECS / folder]))}


def resolved(folder: str) -> dict[str, RunSpec]:
    return {run.name: run.spec for run in compiled(folder).runs}


def with_concrete(folder: str, name: str) -> dict[str, RunSpec]:
    """The set's runs with the abstract entry `name` turned into a run (to check a base by itself)."""
    documents = []
    for document in read_documents([SPECS / folder]):
        data = copy.deepcopy(document.data)
        for entry in data.get("runs", []):
            if entry.get("name") == name:
                entry["abstract"] = False
        documents.append(dataclasses.replace(document, data=data))
    return {spec.name: resolve_run(spec) for spec, _ in validated_runs(documents)}
