"""A spec set: the files under the given paths, compiled into hashed runs.

This is the front half of the compiler as one pure function of the files'
bytes (and, once locked, of the lockfile): find files → parse → expand →
validate → resolve → hash, parents before children.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from compiler.canonical import run_hash
from compiler.expand import RawRun, expand_documents
from compiler.problems import Location, Problem, SpecError
from compiler.resolve import resolve_run
from compiler.spec import ParentInit, RunSpec
from compiler.validate import check_run, check_set, parse_run
from compiler.yaml_source import Document, parse_document

SPEC_SUFFIXES = (".yaml", ".yml", ".json")

InputsFor = Callable[[RunSpec], Mapping[str, Any]]
"""Locked inputs of a resolved run (from the lockfile); see compiler.lock."""


@dataclasses.dataclass(frozen=True)
class CompiledRun:
    spec: RunSpec  # fully resolved
    hash: str
    parent_hash: str | None
    parent_name: str | None  # None for scratch runs and parents given by hash
    location: Location

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def short_hash(self) -> str:
        return self.hash[:12]


@dataclasses.dataclass(frozen=True)
class SpecSet:
    runs: tuple[CompiledRun, ...]  # parents before children, then by name

    def by_name(self) -> dict[str, CompiledRun]:
        return {run.name: run for run in self.runs}

    def by_hash(self) -> dict[str, CompiledRun]:
        return {run.hash: run for run in self.runs}

    def descendants(self, name: str) -> list[CompiledRun]:
        """Runs whose initialization chain passes through `name`."""
        out: list[CompiledRun] = []
        frontier = {name}
        for run in self.runs:  # topological order: parents come first
            if run.parent_name in frontier:
                out.append(run)
                frontier.add(run.name)
        return out


def spec_files(paths: Iterable[str | pathlib.Path]) -> tuple[list[pathlib.Path], list[Problem]]:
    """The spec files under the paths (folders recursively), in a stable order."""
    files: list[pathlib.Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = pathlib.Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in SPEC_SUFFIXES)
            for candidate in found:
                if candidate.is_dir():
                    problems.append(Problem(Location(str(candidate)), "", "is a directory, expected a spec file"))
                else:
                    files.append(candidate)
            if not found:
                problems.append(Problem(Location(str(path)), "", f"no spec files ({', '.join(SPEC_SUFFIXES)}) in this folder"))
        elif path.is_file():
            files.append(path)
        elif path.exists():
            problems.append(Problem(Location(str(path)), "", "not a regular file or folder"))
        else:
            problems.append(Problem(Location(str(path)), "", "no such file or folder"))
    return files, problems


def read_documents(paths: Iterable[str | pathlib.Path]) -> list[Document]:
    files, problems = spec_files(paths)
    documents = []
    for file in files:
        try:
            text = file.read_bytes()
        except OSError as err:
            problems.append(Problem(Location(str(file)), "", f"cannot read: {err.strerror}"))
            continue
        try:
            documents.append(parse_document(text, str(file)))
        except SpecError as err:
            problems.extend(err.problems)
    if problems:
        raise SpecError(problems)
    return documents


def validated_runs(documents: Sequence[Document]) -> list[tuple[RunSpec, RawRun]]:
    """Expanded and validated runs (not yet resolved or hashed); raises with every problem."""
    raws = expand_documents(documents)
    problems: list[Problem] = []
    runs: list[tuple[RunSpec, RawRun]] = []
    for raw in raws:
        spec, parse_problems = parse_run(raw)
        problems.extend(parse_problems)
        if spec is not None:
            problems.extend(check_run(spec, raw))
            runs.append((spec, raw))
    problems.extend(check_set(runs))
    if problems:
        raise SpecError(problems)
    return runs


def compile_documents(documents: Sequence[Document], inputs_for: InputsFor | None = None) -> SpecSet:
    runs = validated_runs(documents)
    resolved = [(resolve_run(spec), raw.entry) for spec, raw in runs]
    return _hashed(resolved, inputs_for)


def rehash(spec_set: SpecSet, inputs_for: InputsFor | None) -> SpecSet:
    """The same runs hashed with other locked inputs (validation and resolution are not repeated)."""
    return _hashed([(run.spec, run.location) for run in spec_set.runs], inputs_for)


def _hashed(resolved: Sequence[tuple[RunSpec, Location]], inputs_for: InputsFor | None) -> SpecSet:
    by_name = {spec.name: (spec, location) for spec, location in resolved}
    compiled: dict[str, CompiledRun] = {}

    def build(name: str) -> None:
        # Iterative: walk up the initialization chain to a hashed (or scratch) ancestor, then hash down,
        # so a chain of any length costs no Python recursion. Validation has ruled out cycles.
        chain = [name]
        while True:
            spec = by_name[chain[-1]][0]
            parent = spec.init.run if isinstance(spec.init, ParentInit) else None
            if parent is None or parent in compiled:
                break
            chain.append(parent)
        for link in reversed(chain):
            spec, location = by_name[link]
            parent_hash = parent_name = None
            if isinstance(spec.init, ParentInit):
                if spec.init.run is not None:
                    parent_name = spec.init.run
                    parent_hash = compiled[parent_name].hash
                else:
                    parent_hash = spec.init.hash
            inputs = inputs_for(spec) if inputs_for else None
            compiled[link] = CompiledRun(spec, run_hash(spec, parent_hash, inputs), parent_hash, parent_name, location)

    for name in sorted(by_name):
        if name not in compiled:
            build(name)
    return SpecSet(_topological(compiled))


def load_spec_set(paths: Iterable[str | pathlib.Path], inputs_for: InputsFor | None = None) -> SpecSet:
    """Read, expand, validate, resolve and hash the spec set under `paths`."""
    return compile_documents(read_documents(paths), inputs_for)


def _topological(compiled: Mapping[str, CompiledRun]) -> tuple[CompiledRun, ...]:
    """Parents before children; among runs of the same depth, by name."""
    depth: dict[str, int] = {}
    for name in compiled:
        chain = [name]
        while chain[-1] not in depth and compiled[chain[-1]].parent_name is not None:
            chain.append(compiled[chain[-1]].parent_name)
        known = depth.get(chain[-1], 0)
        for link in reversed(chain):
            if link not in depth:
                depth[link] = known
            known = depth[link] + 1

    return tuple(sorted(compiled.values(), key=lambda run: (depth[run.name], run.name)))
