"""Lockfiles: every floating input of a spec set, pinned by content.

Like Nix's flake.lock, a lockfile keeps what the user asked for (`original`:
a URI as written) apart from what it resolved to (`locked`: versions, the
sha256 of every file, token counts, the tokenizer digest), plus the runtime
software versions and numerics facts of the machine that locked it. One
lockfile per spec set, `lockfiles/<name>.lock.json` in the project:

    {
      "runix_lock": 1,
      "spec_set": {"paths": ["specs/tiny"],
                   "runs": {"tiny-code": {"spec_sha256": "…", "sources": {"code": "builtin://code"},
                                          "tokenizer": "builtin://bpe?vocab_size=4096",
                                          "mesh": "cpu chips=1 data=1 fsdp=1 tensor=1"}}},
      "sources": {"builtin://code": {"original": {"uri": "builtin://code"},
                                     "locked": {"type": "builtin", "digest": "…", "files": {…},
                                                "token_counts": {"builtin://bpe?vocab_size=4096": 123}},
                                     "unresolved": null}},
      "tokenizers": {"builtin://bpe?vocab_size=4096": {"original": {"uri": "builtin://bpe", "vocab_size": 4096},
                                                       "locked": {…}, "unresolved": null}},
      "environment": {"runtime": {"python": "3.11.7", "jax": "0.10.2", …},
                      "numerics": {"cpu chips=1 data=1 fsdp=1 tensor=1": {"bits": {…}, "host": {…}}}}
    }

What enters a run's hash (`Lock.inputs_for`): the digest of each of its
sources and of its tokenizer (or an "unresolved" marker), the runtime
versions, and the `bits` of the numerics facts of its mesh
(runtime.numerics.numerics_facts: pinned XLA flags, effective ISA, thread
pool; `host` facts such as the CPU model are recorded, not hashed). Nothing
about where files live, so moving data or the lockfile changes no hash.

Staleness is checked hermetically and cheaply: `spec_sha256` is each run's
hash without locked inputs (compiler.canonical.run_hash with inputs=None; it
covers the parents' specs transitively). Comparing it needs only the spec
files and the lockfile, never the data. Whether the data still has its
digests is `runix lock --check` (it re-resolves everything).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import shlex
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from compiler.canonical import canonical_json
from compiler.environment import hashed_numerics, mesh_key
from compiler.evals import eval_uris
from compiler.problems import Location, Problem, SpecError
from compiler.spec import HASH_PATTERN, RunSpec
from compiler.specset import CompiledRun, SpecSet, compile_documents, read_documents, rehash
from compiler.yaml_source import Document

LOCK_FORMAT = 1
LOCKFILES_DIR = "lockfiles"
LOCK_SUFFIX = ".lock.json"
PROJECT_MARKERS = ("lockfiles", "pyproject.toml", ".git", ".runix")
"""A folder holding one of these is a project root (where lockfiles/ and .runix/ live)."""

BUILTIN_TOKENIZER_PREFIX = "builtin://"


# --------------------------------------------------------------------------- the file format


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LockedInput(_Strict):
    """One input: what was asked for, and what it resolved to (or why not)."""

    original: dict[str, Any] = Field(..., description="What the spec says: {'uri': ...} (+ vocab_size for built-in tokenizers).")
    locked: dict[str, Any] | None = Field(..., description="What it resolved to; always holds a hex sha256 'digest'.")
    unresolved: str | None = Field(..., description="Why it could not be resolved here (then locked is null).")

    @model_validator(mode="after")
    def _one_of(self) -> LockedInput:
        if (self.locked is None) == (self.unresolved is None):
            raise ValueError("exactly one of 'locked' and 'unresolved' must be set")
        if not isinstance(self.original.get("uri"), str):
            raise ValueError("original.uri must be a string")
        if self.locked is not None and not re.fullmatch(r"[0-9a-f]{64}", str(self.locked.get("digest", ""))):
            raise ValueError("locked.digest must be a hex sha256")
        return self

    @property
    def digest(self) -> str | None:
        return None if self.locked is None else self.locked["digest"]

    def hashed(self) -> dict[str, Any]:
        """What of this input enters the hash of a run that reads it."""
        return {"digest": self.locked["digest"]} if self.locked is not None else {"unresolved": True}


class LockedRun(_Strict):
    spec_sha256: str = Field(..., pattern=HASH_PATTERN, description="The run's hash without locked inputs.")
    sources: dict[str, str] = Field(..., description="Source name → URI.")
    tokenizer: str = Field(..., description="Key of the run's tokenizer in `tokenizers`.")
    mesh: str = Field(..., description="Key of the run's mesh in environment.numerics.")


class SpecSetRecord(_Strict):
    paths: tuple[str, ...] = Field(..., min_length=1, description="The spec set's paths, relative to the project root.")
    runs: dict[str, LockedRun]


class Environment(_Strict):
    runtime: dict[str, str | None] = Field(..., description="python and runtime package versions.")
    numerics: dict[str, dict[str, Any]] = Field(..., description="Mesh key → numerics facts {'bits', 'host'} for it.")


class Lock(_Strict):
    """A parsed lockfile (see the module docstring for the format)."""

    runix_lock: Literal[1] = LOCK_FORMAT
    spec_set: SpecSetRecord
    sources: dict[str, LockedInput]
    tokenizers: dict[str, LockedInput]
    environment: Environment

    @field_validator("sources", "tokenizers")
    @classmethod
    def _keys_match_originals(cls, value: dict[str, LockedInput]) -> dict[str, LockedInput]:
        for key, entry in value.items():
            if input_key(entry.original) != key:
                raise ValueError(f"entry {key!r} holds original {entry.original}")
        return value

    @model_validator(mode="after")
    def _runs_refer_to_entries(self) -> Lock:
        for name, run in self.spec_set.runs.items():
            missing = [uri for uri in run.sources.values() if uri not in self.sources]
            if run.tokenizer not in self.tokenizers:
                missing.append(run.tokenizer)
            if run.mesh not in self.environment.numerics:
                missing.append(f"numerics of mesh {run.mesh!r}")
            if missing:
                raise ValueError(f"run {name} refers to inputs with no entry: {', '.join(missing)}")
        return self

    # -- what runs see --------------------------------------------------------------------

    def inputs_for(self, spec: RunSpec) -> dict[str, Any]:
        """The locked inputs of a resolved run, as they enter its hash (specset's `inputs_for`)."""
        try:
            sources = {name: self.sources[src.uri].hashed() for name, src in sorted(spec.data.sources.items())}
            tokenizer = self.tokenizers[tokenizer_key(spec)].hashed()
            numerics = hashed_numerics(self.environment.numerics[mesh_key(spec.mesh)])
        except KeyError as err:  # the freshness check runs first; this guards direct API use
            raise SpecError([Problem(Location(""), f"runs[{spec.name}]",
                                     f"input {err.args[0]} is not in the lockfile; run `runix lock`")]) from None
        return {
            "sources": sources,
            "tokenizer": tokenizer,
            "runtime": dict(self.environment.runtime),
            "numerics": numerics,
        }

    def entries_for(self, run: CompiledRun) -> dict[str, Any]:
        """A run's own slice of the lock: what the store keeps as its lock.json.

        `inputs` is exactly what was hashed (a store entry can be re-hashed from
        spec.json + lock.json); `sources`/`tokenizer` hold the full records the
        runtime needs to find and verify its data.
        """
        spec = run.spec
        return {
            "runix_lock": LOCK_FORMAT,
            "inputs": self.inputs_for(spec),
            "sources": {name: self.sources[src.uri].model_dump(mode="json") for name, src in sorted(spec.data.sources.items())},
            "tokenizer": self.tokenizers[tokenizer_key(spec)].model_dump(mode="json"),
            "environment": self.environment.model_dump(mode="json"),
        }

    def unresolved_inputs(self, spec: RunSpec) -> list[tuple[str, str, str]]:
        """(what, uri, reason) of every input of the run that is not locked."""
        out = []
        for name, src in sorted(spec.data.sources.items()):
            entry = self.sources.get(src.uri)
            if entry is None or entry.locked is None:
                out.append((f"source {name}", src.uri, entry.unresolved if entry else "not in the lockfile"))
        key = tokenizer_key(spec)
        entry = self.tokenizers.get(key)
        if entry is None or entry.locked is None:
            out.append(("tokenizer", key, entry.unresolved if entry else "not in the lockfile"))
        return out

    def token_count(self, source_uri: str, spec: RunSpec) -> int | None:
        """Tokens of a source under the run's tokenizer, when the lock counted them."""
        entry = self.sources.get(source_uri)
        if entry is None or entry.locked is None:
            return None
        count = entry.locked.get("token_counts", {}).get(tokenizer_key(spec))
        return int(count) if isinstance(count, int) else None

    def to_json(self) -> str:
        """Diff-friendly text: sorted keys, 2-space indent, one trailing newline."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def input_key(original: Mapping[str, Any]) -> str:
    """The key of an input in `sources`/`tokenizers`: the URI, plus vocab_size for built-in tokenizers.

    A built-in tokenizer is trained here for the run's vocabulary size, so
    builtin://bpe at 4096 and at 256000 are two different inputs.
    """
    uri = original["uri"]
    if "vocab_size" in original:
        return f"{uri}?vocab_size={original['vocab_size']}"
    return uri


def tokenizer_original(spec: RunSpec) -> dict[str, Any]:
    uri = spec.data.tokenizer
    if uri.startswith(BUILTIN_TOKENIZER_PREFIX):
        return {"uri": uri, "vocab_size": spec.model.vocab_size}
    return {"uri": uri}


def tokenizer_key(spec: RunSpec) -> str:
    return input_key(tokenizer_original(spec))


# --------------------------------------------------------------------------- where lockfiles live


def project_root(start: str | os.PathLike[str]) -> pathlib.Path | None:
    """The nearest folder at or above `start` holding a PROJECT_MARKERS entry."""
    here = pathlib.Path(start).resolve()
    if not here.is_dir():
        here = here.parent
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return None


def spec_set_root(paths: Sequence[str | os.PathLike[str]]) -> pathlib.Path:
    """The project of a spec set; without one, the folder holding the (first) spec path."""
    first = pathlib.Path(paths[0]).resolve()
    found = project_root(first)
    if found is not None:
        return found
    return first.parent


def relative_spec_paths(paths: Sequence[str | os.PathLike[str]], root: pathlib.Path) -> tuple[str, ...]:
    """The spec set's identity: its paths relative to the project root, '/'-separated, sorted."""
    return tuple(sorted({pathlib.Path(os.path.relpath(pathlib.Path(p).resolve(), root)).as_posix() for p in paths}))


def lockfile_name(paths: Sequence[str | os.PathLike[str]]) -> str:
    """`specs/tiny` → tiny.lock.json; `a.yaml b/` → a+b.lock.json."""
    stems = sorted({_stem(pathlib.Path(p).resolve()) for p in paths})
    name = "+".join(stems)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name) + LOCK_SUFFIX


def distinct_lockfile_name(rel_paths: Sequence[str]) -> str:
    """A longer name for when the short one is taken by another spec set: specs/tiny → specs-tiny.lock.json."""
    name = "+".join("-".join(pathlib.PurePosixPath(p).with_suffix("").parts[-2:]) for p in rel_paths)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name) + LOCK_SUFFIX


def _stem(path: pathlib.Path) -> str:
    if path.is_dir() or not path.suffix:
        return path.name or "root"
    return path.stem


def default_lockfile(paths: Sequence[str | os.PathLike[str]]) -> pathlib.Path:
    return spec_set_root(paths) / LOCKFILES_DIR / lockfile_name(paths)


def lock_command(paths: Sequence[str | os.PathLike[str]], lockfile: str | os.PathLike[str] | None = None) -> str:
    """The command that (re)writes the lock of these paths, as the user would type it."""
    words = ["runix", "lock", *map(str, paths)]
    if lockfile is not None:
        words += ["--lockfile", str(lockfile)]
    return shlex.join(words)


# --------------------------------------------------------------------------- reading and writing


def read_lock(path: str | os.PathLike[str], fix: str = "") -> Lock:
    """Parse and check a lockfile; a missing or corrupt one is a SpecError naming it."""
    path = pathlib.Path(path)
    where = Location(str(path))
    hint = f"; {fix}" if fix else ""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise SpecError([Problem(where, "", f"no lockfile{hint}")]) from None
    except OSError as err:
        raise SpecError([Problem(where, "", f"cannot read the lockfile: {err.strerror}")]) from None
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SpecError([Problem(where, "", f"corrupt lockfile: not JSON ({err}){hint}")]) from None
    if isinstance(data, dict) and data.get("runix_lock") not in (None, LOCK_FORMAT):
        raise SpecError([Problem(where, "runix_lock",
                                 f"lockfile format {data.get('runix_lock')!r}, this runix reads {LOCK_FORMAT}{hint}")])
    try:
        return Lock.model_validate(data)
    except ValidationError as err:
        errors = err.errors()
        problems = [Problem(where, "", f"corrupt lockfile ({len(errors)} problem{'s' if len(errors) != 1 else ''}"
                                       f"{', the first 5 below' if len(errors) > 5 else ''}){hint}")]
        problems += [Problem(where, ".".join(map(str, e["loc"])), e["msg"]) for e in errors[:5]]
        raise SpecError(problems) from None


def write_lock(path: str | os.PathLike[str], lock: Lock) -> None:
    """Write atomically (temp file + rename): a crash never leaves half a lockfile."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(lock.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; a lockfile is shared like any source file
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- building a lock


def spec_record(unlocked: SpecSet, rel_paths: Sequence[str]) -> SpecSetRecord:
    """The spec-set part of a lock, from the set hashed without inputs."""
    return SpecSetRecord(paths=tuple(rel_paths), runs={
        run.name: LockedRun(
            spec_sha256=run.hash,
            sources={name: src.uri for name, src in sorted(run.spec.data.sources.items())},
            tokenizer=tokenizer_key(run.spec),
            mesh=mesh_key(run.spec.mesh),
        )
        for run in unlocked.runs
    })


def build_lock(unlocked: SpecSet, rel_paths: Sequence[str], resolver, environment: Mapping[str, Any],
               progress: Callable[[str, str, LockedInput], None] = lambda kind, key, entry: None) -> Lock:
    """Resolve every input of every run (each once) and assemble the lock.

    resolver: compiler.resolve_inputs.Resolver.
    environment: {"runtime": versions, "numerics": facts}, where facts is a
      function of a mesh (compiler.environment.numerics_facts) called once per
      distinct mesh, or one mapping used for every mesh.
    """
    source_uris = sorted({src.uri for run in unlocked.runs for src in run.spec.data.sources.values()}
                         | eval_uris(run.spec for run in unlocked.runs))  # eval sets are pinned like sources
    tokenizer_originals = {tokenizer_key(run.spec): tokenizer_original(run.spec) for run in unlocked.runs}
    sources: dict[str, dict[str, Any]] = {}
    for uri in source_uris:
        resolution = resolver.source(uri)
        sources[uri] = {"original": {"uri": uri}, "locked": _copy(resolution.locked), "unresolved": resolution.unresolved}
        progress("source", uri, LockedInput(**sources[uri]))
    tokenizers: dict[str, dict[str, Any]] = {}
    for key, original in sorted(tokenizer_originals.items()):
        resolution = resolver.tokenizer(original["uri"], original.get("vocab_size") or 0)
        tokenizers[key] = {"original": original, "locked": _copy(resolution.locked), "unresolved": resolution.unresolved}
        progress("tokenizer", key, LockedInput(**tokenizers[key]))
    for run in unlocked.runs:
        key = tokenizer_key(run.spec)
        tokenizer = tokenizers[key]
        for src in run.spec.data.sources.values():
            source = sources[src.uri]
            if source["locked"] is None or tokenizer["locked"] is None:
                continue
            counts = source["locked"].setdefault("token_counts", {})
            if key not in counts:
                count = resolver.token_count(src.uri, source["locked"], tokenizer["original"]["uri"],
                                             run.spec.model.vocab_size or 0, tokenizer["locked"])
                if count is not None:
                    counts[key] = count
            if not counts:
                del source["locked"]["token_counts"]
    facts = environment["numerics"]
    meshes = {mesh_key(run.spec.mesh): run.spec.mesh for run in unlocked.runs}
    numerics = {key: _copy(facts(mesh) if callable(facts) else facts) for key, mesh in sorted(meshes.items())}
    return Lock(
        spec_set=spec_record(unlocked, rel_paths),
        sources={uri: LockedInput(**entry) for uri, entry in sources.items()},
        tokenizers={key: LockedInput(**entry) for key, entry in tokenizers.items()},
        environment=Environment(runtime=dict(environment["runtime"]), numerics=numerics),
    )


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value)) if value is not None else None


# --------------------------------------------------------------------------- freshness


@dataclasses.dataclass(frozen=True)
class LockedSpecSet:
    """A spec set hashed with its lock: what hash, compile, launch and gc work from."""

    spec_set: SpecSet  # hashes include the locked inputs
    lock: Lock
    lockfile: pathlib.Path  # the lockfile used (the first, when several locked parts of the set are combined)
    unlocked: SpecSet  # the same runs hashed without inputs (spec_sha256 in the lock)
    lockfiles: tuple[pathlib.Path, ...] = ()  # every lockfile used


def load_locked_spec_set(paths: Sequence[str | os.PathLike[str]], lockfile: str | os.PathLike[str] | None = None,
                         *, cwd: str | os.PathLike[str] | None = None) -> LockedSpecSet:
    """Read, validate and hash a spec set with its lockfile; SpecError (exit 2) if the lock is missing or stale.

    Without `lockfile`: `<project>/lockfiles/<name>.lock.json`; if that does not
    exist, a lockfile in the project of the specs (or of `cwd`) whose runs match
    these runs' content is used — a spec set copied or renamed, or one file of
    a locked folder, needs no lock of its own. Spec problems are reported
    before lock problems.
    """
    documents = read_documents(paths)
    unlocked = compile_documents(documents)
    return lock_spec_set(paths, documents, unlocked, lockfile, cwd=cwd)


def lock_spec_set(paths: Sequence[str | os.PathLike[str]], documents: Sequence[Document], unlocked: SpecSet,
                  lockfile: str | os.PathLike[str] | None = None, *, cwd: str | os.PathLike[str] | None = None) -> LockedSpecSet:
    root = spec_set_root(paths)
    rel_paths = relative_spec_paths(paths, root)
    fix = f"update it with `{lock_command(paths, lockfile)}`"
    if lockfile is not None:
        path = pathlib.Path(lockfile)
    else:
        path = default_lockfile(paths)
        if not path.exists():
            found = find_matching_lock(unlocked, _lockfile_dirs(root, cwd))
            if found is None:
                raise SpecError([Problem(Location(str(path)), "",
                                         f"no lockfile for spec set {' '.join(rel_paths)}; create it with "
                                         f"`{lock_command(paths)}`")])
            lock, used = found
            return LockedSpecSet(rehash(unlocked, lock.inputs_for), lock, used[0], unlocked, used)
    lock = read_lock(path, f"rewrite it with `{lock_command(paths, lockfile)} --force`")
    other_fix = (f"lock this spec set into its own file with "
                 f"`{lock_command(paths, path.with_name(distinct_lockfile_name(rel_paths)))}`")
    problems = freshness_problems(lock, unlocked, rel_paths, Location(str(path)), fix, other_fix)
    if problems:
        raise SpecError(problems)
    return LockedSpecSet(rehash(unlocked, lock.inputs_for), lock, path, unlocked, (path,))


def freshness_problems(lock: Lock, unlocked: SpecSet, rel_paths: Sequence[str], where: Location, fix: str,
                       other_fix: str = "") -> list[Problem]:
    """Why `lock` does not fit the spec set hashed as `unlocked` (empty: it fits).

    fix: how to update a stale lock; other_fix: what to do when the lockfile
    belongs to another spec set (it must not be overwritten).
    """
    recorded = lock.spec_set
    same_set = tuple(recorded.paths) == tuple(rel_paths)
    if not same_set and not covers(lock, unlocked):
        return [Problem(where, "spec_set.paths",
                        f"lockfile belongs to another spec set ({' '.join(recorded.paths)}), not "
                        f"{' '.join(rel_paths)}" + (f"; {other_fix}" if other_fix else ""))]
    problems = []
    current = {run.name: run for run in unlocked.runs}
    for name, run in sorted(current.items()):
        old = recorded.runs.get(name)
        field = f"spec_set.runs.{name}"
        if old is None:
            problems.append(Problem(where, field, f"stale lock: run {name} is not locked (a new run); {fix}"))
            continue
        if old.spec_sha256 != run.hash:
            problems.append(Problem(where, field, f"stale lock: {_what_changed(old, run)} "
                                                  f"(spec sha256 {old.spec_sha256} → {run.hash}); {fix}"))
    if same_set:
        for name in sorted(set(recorded.runs) - set(current)):
            problems.append(Problem(where, f"spec_set.runs.{name}",
                                    f"stale lock: run {name} was removed from the spec set; {fix}"))
    return problems


def _what_changed(old: LockedRun, run: CompiledRun) -> str:
    """Name the drifted input of a changed run when it is a data source or the tokenizer."""
    new_sources = {name: src.uri for name, src in run.spec.data.sources.items()}
    changes = []
    for name in sorted(set(old.sources) | set(new_sources)):
        before, after = old.sources.get(name), new_sources.get(name)
        if before != after:
            changes.append(f"source {name} {before or '(none)'} → {after or '(none)'}")
    if old.tokenizer != tokenizer_key(run.spec):
        changes.append(f"tokenizer {old.tokenizer} → {tokenizer_key(run.spec)}")
    if changes:
        return f"run {run.name} changed its inputs: {'; '.join(changes)}"
    if run.parent_name is not None:
        return f"run {run.name} or its parent chain changed since it was locked"
    return f"run {run.name} changed since it was locked"


def covers(lock: Lock, unlocked: SpecSet) -> bool:
    """Every run of the set is in the lock with the same content (the lock may hold more)."""
    runs = lock.spec_set.runs
    return bool(unlocked.runs) and all(
        run.name in runs and runs[run.name].spec_sha256 == run.hash for run in unlocked.runs
    )


def find_matching_lock(unlocked: SpecSet, folders: Iterable[pathlib.Path]) -> tuple[Lock, tuple[pathlib.Path, ...]] | None:
    """A lock for the set's runs found by content among the lockfiles in `folders`.

    One lockfile covering every run is preferred (a copied or renamed spec
    set, one file of a locked folder). Otherwise each run is taken from the
    first lockfile (by name) that locked exactly its content, and those locks
    are combined — `runix compile specs/a specs/b` works from a.lock.json and
    b.lock.json — provided they agree on every shared input and on the
    environment. None when some run is in no lockfile.
    """
    candidates = []
    for folder in folders:
        for candidate in sorted(folder.glob("*" + LOCK_SUFFIX)):
            try:
                candidates.append((candidate, read_lock(candidate)))
            except SpecError:
                continue
    for path, lock in candidates:
        if covers(lock, unlocked):
            return lock, (path,)
    chosen: dict[pathlib.Path, Lock] = {}
    runs: dict[str, LockedRun] = {}
    for run in unlocked.runs:
        for path, lock in candidates:
            entry = lock.spec_set.runs.get(run.name)
            if entry is not None and entry.spec_sha256 == run.hash:
                chosen[path] = lock
                runs[run.name] = entry
                break
        else:
            return None
    merged = merge_locks(list(chosen.values()), runs)
    return None if merged is None else (merged, tuple(chosen))


def merge_locks(locks: Sequence[Lock], runs: Mapping[str, LockedRun]) -> Lock | None:
    """One lock from several that agree on shared inputs and on the environment (else None)."""
    if not locks or any(lock.environment != locks[0].environment for lock in locks):
        return None
    sources: dict[str, LockedInput] = {}
    tokenizers: dict[str, LockedInput] = {}
    for lock in locks:
        for merged, entries in ((sources, lock.sources), (tokenizers, lock.tokenizers)):
            for key, entry in entries.items():
                if key in merged and merged[key].digest != entry.digest:
                    return None
                merged.setdefault(key, entry)
    paths = tuple(sorted({p for lock in locks for p in lock.spec_set.paths}))
    return Lock(spec_set=SpecSetRecord(paths=paths, runs=dict(runs)), sources=sources, tokenizers=tokenizers,
                environment=locks[0].environment)


def _lockfile_dirs(root: pathlib.Path, cwd: str | os.PathLike[str] | None) -> list[pathlib.Path]:
    folders = [root / LOCKFILES_DIR]
    cwd_root = project_root(cwd if cwd is not None else pathlib.Path.cwd())
    if cwd_root is not None and cwd_root / LOCKFILES_DIR not in folders:
        folders.append(cwd_root / LOCKFILES_DIR)
    return [folder for folder in folders if folder.is_dir()]


# --------------------------------------------------------------------------- launch and lock --check


def require_fully_resolved(lock: Lock, runs: Iterable[CompiledRun], where: str = "") -> None:
    """Launch's gate: every input of every run resolved to content, else SpecError (exit 2) naming each."""
    problems = []
    for run in runs:
        for what, uri, reason in lock.unresolved_inputs(run.spec):
            problems.append(Problem(Location(where or str(run.location.file)), f"runs[{run.name}]",
                                    f"{what} {uri} is unresolved ({reason}); a launch needs every input locked: "
                                    f"make it reachable here and run `runix lock` again"))
    if problems:
        raise SpecError(problems)


def environment_drift(lock: Lock, runs: Iterable[CompiledRun] = ()) -> list[Drift]:
    """How this machine differs from the lock in what enters the hash: runtime versions, numerics bits.

    Launch calls it before training `runs` (their meshes' numerics are
    recomputed). Cheap: distribution metadata and /proc/cpuinfo, no jax
    import. A run trained under other versions would not be the run its hash
    names.
    """
    from compiler.environment import numerics_facts, runtime_versions

    meshes = {mesh_key(run.spec.mesh): run.spec.mesh for run in runs}
    here = Environment(runtime=runtime_versions(),
                       numerics={**lock.environment.numerics, **{key: numerics_facts(mesh) for key, mesh in meshes.items()}})
    current = lock.model_copy(update={"environment": here})
    return [d for d in compare_locks(lock, current) if d.what.startswith(("runtime ", "numerics"))]


@dataclasses.dataclass(frozen=True)
class Drift:
    """One input whose content differs from its lock."""

    what: str  # "source builtin://code", "tokenizer …", "runtime jax", "numerics"
    old: str | None
    new: str | None
    note: str = ""

    def __str__(self) -> str:
        text = f"{self.what}: {self.old or '(unresolved)'} → {self.new or '(unresolved)'}"
        return f"{text} ({self.note})" if self.note else text


def compare_locks(old: Lock, new: Lock) -> list[Drift]:
    """What re-resolving changed: digests, resolvability, environment."""
    drifts: list[Drift] = []
    for kind, before, after in (("source", old.sources, new.sources), ("tokenizer", old.tokenizers, new.tokenizers)):
        for key in sorted(set(before) | set(after)):
            a, b = before.get(key), after.get(key)
            if a is None or b is None:
                drifts.append(Drift(f"{kind} {key}", a and a.digest, b and b.digest,
                                    "new input" if a is None else "no longer used"))
            elif a.digest != b.digest:
                note = ""
                if b.locked is None:
                    note = f"cannot be verified here: {b.unresolved}"
                elif a.locked is None:
                    note = "was unresolved, now resolves"
                else:
                    note = _changed_files(a.locked, b.locked)
                drifts.append(Drift(f"{kind} {key}", a.digest, b.digest, note))
    for package in sorted(set(old.environment.runtime) | set(new.environment.runtime)):
        a, b = old.environment.runtime.get(package), new.environment.runtime.get(package)
        if a != b:
            drifts.append(Drift(f"runtime {package}", a or "(absent)", b or "(absent)"))
    for key in sorted(set(old.environment.numerics) | set(new.environment.numerics)):
        a, b = old.environment.numerics.get(key), new.environment.numerics.get(key)
        bits_a, bits_b = (hashed_numerics(x) if x is not None else None for x in (a, b))
        if bits_a != bits_b:
            changed = sorted(k for k in set(bits_a or {}) | set(bits_b or {}) if (bits_a or {}).get(k) != (bits_b or {}).get(k))
            drifts.append(Drift(f"numerics [{key}]", bits_a and _short_json(bits_a), bits_b and _short_json(bits_b),
                                f"differs in {', '.join(changed)}" if a is not None and b is not None else ""))
    return drifts


def _changed_files(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    fa, fb = a.get("files") or {}, b.get("files") or {}
    changed = sorted(rel for rel in set(fa) | set(fb) if (fa.get(rel) or {}).get("sha256") != (fb.get(rel) or {}).get("sha256"))
    if not changed:
        return ""
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return f"files changed: {shown}"


def _short_json(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]
