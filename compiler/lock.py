"""Lockfiles: every floating input of a spec set, pinned by content.

Like Nix's flake.lock, a lockfile pins *inputs*, not the runs made from them:
runs are evaluated freely from the spec files and whatever the lock holds for
their inputs. Each input keeps what the user asked for (`original`: a URI as
written) apart from what it resolved to (`locked`: versions, the sha256 of
every file, token counts, the tokenizer digest), and is keyed by what it is:
sources by URI, tokenizers by URI (+ vocab size for built-in ones), the
runtime software by package, numerics facts by accelerator kind. One
lockfile per spec set, `lockfiles/<name>.lock.json` in the project:

    {
      "runix_lock": 2,
      "spec_set": {"paths": ["specs/tiny"],
                   "runs": {"tiny-code": "<hash>", …}},          # for review only
      "sources": {"builtin://code": {"original": {"uri": "builtin://code"},
                                     "locked": {"type": "builtin", "digest": "…", "files": {…},
                                                "token_counts": {"builtin://bpe?vocab_size=4096": 123}},
                                     "unresolved": null}},
      "tokenizers": {"builtin://bpe?vocab_size=4096": {"original": {"uri": "builtin://bpe", "vocab_size": 4096},
                                                       "locked": {…}, "unresolved": null}},
      "environment": {"runtime": {"python": "3.11.7", "jax": "0.10.2", …},
                      "numerics": {"cpu": {"facts": {"cpu_isa": […], "machine": "x86_64", …},
                                           "host": {"cpu_model": "…", …}}}}
    }

`token_counts` is keyed by the tokenizer's key, plus `#format=…&text_field=…`
for a source read with reader options (`count_key`); `runix lock` counts a
file or `tfds://` source by tokenizing it once into its shard (published into
the store). Counts enter no hash.

What enters a run's hash (`Lock.inputs_for`): the digest of each of its
sources and of its tokenizer (or an "unresolved" marker), the runtime
versions, and the numerics bits of its mesh: runtime.numerics.numerics_bits
of the recorded `facts` of its accelerator kind and of the mesh (pinned XLA
flags, effective ISA, thread pool) — a pure function, so hashing reads
nothing but the spec files and the lockfile. `host` facts (the CPU model) are
recorded, not hashed. Nothing about where files live, so moving data, the
lockfile or the whole checkout changes no hash.

Freshness is a question per input: a run needs `runix lock` only when one of
its inputs has no entry (a new source URI, a tokenizer, an accelerator kind),
and the message names that input. Seeds, schedules, steps, shares, model
dims, a mesh on a locked accelerator kind: edit freely. `spec_set.runs`
records the hashes the lock was written with, for review (what a relock
would change); nothing compares them. Whether the data still has its
digests is `runix lock --check` (it re-resolves everything).

Format 2 (this one) replaced format 1, which pinned runs by their hash
without inputs and so called every spec edit a stale lock.
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
from compiler.environment import accelerator_name, numerics_bits
from compiler.evals import eval_uris
from compiler.problems import Location, Problem, SpecError
from compiler.resolve_inputs import SourceReadError
from compiler.spec import HASH_PATTERN, DataSource, RunSpec
from compiler.specset import CompiledRun, SpecSet, compile_documents, read_documents, rehash
from compiler.yaml_source import Document

LOCK_FORMAT = 2
OLDER_LOCK_FORMATS = (1,)
"""Formats `runix lock` replaces without --force (1 pinned runs by their hash without inputs)."""
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


class SpecSetRecord(_Strict):
    paths: tuple[str, ...] = Field(..., min_length=1, description="The spec set's paths, relative to the project root.")
    runs: dict[str, str] = Field(..., description="Run name → its hash when the lock was written (for review only).")

    @field_validator("runs")
    @classmethod
    def _hashes(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name, digest in value.items() if not re.fullmatch(HASH_PATTERN, digest)]
        if bad:
            raise ValueError(f"runs {', '.join(sorted(bad))}: not a hex sha256")
        return value


class Environment(_Strict):
    runtime: dict[str, str | None] = Field(..., description="python and runtime package versions.")
    numerics: dict[str, dict[str, Any]] = Field(
        ..., description="Accelerator kind → {'facts': hashed host facts, 'host': recorded only} (runtime.numerics.host_facts).")

    @field_validator("numerics")
    @classmethod
    def _entries(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for kind, entry in value.items():
            if not isinstance(entry.get("facts"), dict):
                raise ValueError(f"numerics entry {kind!r} has no 'facts' mapping")
        return value


class Lock(_Strict):
    """A parsed lockfile (see the module docstring for the format)."""

    runix_lock: Literal[2] = LOCK_FORMAT
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

    # -- what runs see --------------------------------------------------------------------

    def inputs_for(self, spec: RunSpec) -> dict[str, Any]:
        """The locked inputs of a resolved run, as they enter its hash (specset's `inputs_for`)."""
        missing = self.missing_inputs(spec)
        if missing:  # load_locked_spec_set reports these first, with the spec's file and line; this guards direct API use
            raise SpecError([Problem(Location(""), f"runs[{spec.name}].{field}", f"{what} is not in the lockfile; run `runix lock`")
                             for what, field in missing])
        return {
            "sources": {name: self.sources[src.uri].hashed() for name, src in sorted(spec.data.sources.items())},
            "tokenizer": self.tokenizers[tokenizer_key(spec)].hashed(),
            "runtime": dict(self.environment.runtime),
            "numerics": numerics_bits(self.environment.numerics[accelerator_name(spec.mesh)], spec.mesh),
        }

    def missing_inputs(self, spec: RunSpec) -> list[tuple[str, str]]:
        """(what, field path in the run) of every input of the run that has no entry here: what needs `runix lock`."""
        out = []
        for name, src in sorted(spec.data.sources.items()):
            if src.uri not in self.sources:
                out.append((f"source {name} {src.uri}", f"data.sources.{name}.uri"))
        key = tokenizer_key(spec)
        if key not in self.tokenizers:
            out.append((f"tokenizer {key}", "data.tokenizer"))
        kind = accelerator_name(spec.mesh)
        if kind not in self.environment.numerics:
            out.append((f"numerics of accelerator {kind}", "mesh.accelerator"))
        return out

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

    def token_count(self, source_uri: str, spec: RunSpec, source: DataSource | None = None) -> int | None:
        """Tokens of a source under the run's tokenizer (read with `source`'s reader options), when the lock counted them."""
        entry = self.sources.get(source_uri)
        if entry is None or entry.locked is None:
            return None
        count = entry.locked.get("token_counts", {}).get(count_key(spec, source))
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


def reader_options(source: DataSource | None) -> dict[str, str]:
    """The reader options a source sets (`format`, `text_field`); {} when it reads with the defaults."""
    if source is None:
        return {}
    options = {"format": getattr(source.format, "value", source.format), "text_field": source.text_field}
    return {key: value for key, value in options.items() if value is not None}


def count_key(spec: RunSpec, source: DataSource | None = None) -> str:
    """Where a source's token count sits in its `token_counts`: the tokenizer's key, plus reader options when set.

    One file read with two `text_field`s is two token streams. Sources that
    set no reader option (every built-in corpus) keep the tokenizer's key alone.
    """
    options = reader_options(source)
    key = tokenizer_key(spec)
    return key + "#" + "&".join(f"{k}={v}" for k, v in sorted(options.items())) if options else key


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
    except RecursionError:
        raise SpecError([Problem(where, "", f"corrupt lockfile: nested too deeply to be a lockfile{hint}")]) from None
    if isinstance(data, dict) and data.get("runix_lock") not in (None, LOCK_FORMAT):
        raise SpecError([Problem(where, "runix_lock",
                                 f"lockfile format {data.get('runix_lock')!r}, this runix reads {LOCK_FORMAT}"
                                 + (f"; rewrite it with `runix lock` on its spec set" if data.get("runix_lock") in OLDER_LOCK_FORMATS else hint))])
    try:
        return Lock.model_validate(data)
    except ValidationError as err:
        errors = err.errors()
        problems = [Problem(where, "", f"corrupt lockfile ({len(errors)} problem{'s' if len(errors) != 1 else ''}"
                                       f"{', the first 5 below' if len(errors) > 5 else ''}){hint}")]
        problems += [Problem(where, ".".join(map(str, e["loc"])), e["msg"]) for e in errors[:5]]
        raise SpecError(problems) from None


def lock_format(path: str | os.PathLike[str]) -> Any:
    """The `runix_lock` value of a lockfile, or None when it cannot be read as a JSON object."""
    try:
        data = json.loads(pathlib.Path(path).read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data.get("runix_lock") if isinstance(data, dict) else None


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


def spec_record(locked: SpecSet, rel_paths: Sequence[str]) -> SpecSetRecord:
    """The spec-set part of a lock: its paths and, for review, the hashes of its runs under the lock."""
    return SpecSetRecord(paths=tuple(rel_paths), runs={run.name: run.hash for run in locked.runs})


def with_spec_set(lock: Lock, unlocked: SpecSet, rel_paths: Sequence[str]) -> Lock:
    """`lock` recording `unlocked`'s runs (hashed with it) and paths; SpecError when a run's input has no entry."""
    problems = missing_input_problems(lock, unlocked, "run `runix lock`")
    if problems:
        raise SpecError(problems)
    return lock.model_copy(update={"spec_set": spec_record(rehash(unlocked, lock.inputs_for), rel_paths)})


def build_lock(unlocked: SpecSet, rel_paths: Sequence[str], resolver, environment: Mapping[str, Any],
               progress: Callable[[str, str, LockedInput], None] = lambda kind, key, entry: None) -> Lock:
    """Resolve every input of every run (each once) and assemble the lock.

    resolver: compiler.resolve_inputs.Resolver.
    environment: {"runtime": versions, "numerics": facts}, where facts is a
      function of an accelerator kind (compiler.environment.numerics_facts)
      called once per kind the runs use, or one entry used for every kind.
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
    problems: list[Problem] = []
    unreadable: set[tuple[str, str]] = set()
    for run in unlocked.runs:
        tokenizer = tokenizers[tokenizer_key(run.spec)]
        for name, src in sorted(run.spec.data.sources.items()):
            source = sources[src.uri]
            if source["locked"] is None or tokenizer["locked"] is None:
                continue
            counts = source["locked"].setdefault("token_counts", {})
            key = count_key(run.spec, src)
            if key not in counts and (src.uri, key) not in unreadable:
                try:  # a file source is tokenized here, once (compiler.resolve_inputs: a shard)
                    count = resolver.token_count(src.uri, source["locked"], tokenizer["original"]["uri"],
                                                 run.spec.model.vocab_size or 0, tokenizer["locked"],
                                                 reader_options(src))
                except SourceReadError as err:  # said once, for the first run that reads it
                    problems.append(Problem(run.location, f"runs[{run.name}].data.sources.{name}", str(err)))
                    unreadable.add((src.uri, key))
                    count = None
                if count is not None:
                    counts[key] = count
            if not counts:
                del source["locked"]["token_counts"]
    if problems:
        raise SpecError(problems)  # every unreadable source at once; nothing is written
    facts = environment["numerics"]
    kinds = sorted({accelerator_name(run.spec.mesh) for run in unlocked.runs})
    numerics = {kind: _copy(facts(kind) if callable(facts) else facts) for kind in kinds}
    lock = Lock(
        spec_set=SpecSetRecord(paths=tuple(rel_paths), runs={}),
        sources={uri: LockedInput(**entry) for uri, entry in sources.items()},
        tokenizers={key: LockedInput(**entry) for key, entry in tokenizers.items()},
        environment=Environment(runtime=dict(environment["runtime"]), numerics=numerics),
    )
    return with_spec_set(lock, unlocked, rel_paths)


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value)) if value is not None else None


# --------------------------------------------------------------------------- freshness


@dataclasses.dataclass(frozen=True)
class LockedSpecSet:
    """A spec set hashed with its lock: what hash, compile, launch and gc work from."""

    spec_set: SpecSet  # hashes include the locked inputs
    lock: Lock
    lockfile: pathlib.Path  # the lockfile used (the first, when several locked parts of the set are combined)
    unlocked: SpecSet  # the same runs hashed without inputs
    lockfiles: tuple[pathlib.Path, ...] = ()  # every lockfile used


def load_locked_spec_set(paths: Sequence[str | os.PathLike[str]], lockfile: str | os.PathLike[str] | None = None,
                         *, cwd: str | os.PathLike[str] | None = None) -> LockedSpecSet:
    """Read, validate and hash a spec set with its lockfile; SpecError (exit 2) if a run's input is not locked.

    Without `lockfile`: `<project>/lockfiles/<name>.lock.json`; if that does not
    exist, a lockfile in the project of the specs (or of `cwd`) that was
    written for these runs (by name) and holds every input they read — a spec
    set copied or renamed, or one file of a locked folder, needs no lock of
    its own. Spec problems are reported before lock problems.
    """
    documents = read_documents(paths)
    unlocked = compile_documents(documents)
    return lock_spec_set(paths, documents, unlocked, lockfile, cwd=cwd)


def lock_spec_set(paths: Sequence[str | os.PathLike[str]], documents: Sequence[Document], unlocked: SpecSet,
                  lockfile: str | os.PathLike[str] | None = None, *, cwd: str | os.PathLike[str] | None = None) -> LockedSpecSet:
    root = spec_set_root(paths)
    rel_paths = relative_spec_paths(paths, root)
    fix = f"add it with `{lock_command(paths, lockfile)}`"
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
    """Why `lock` cannot hash the spec set `unlocked` (empty: it can): the inputs it has no entry for.

    Only inputs count: a run whose spec changed (seed, schedule, steps,
    shares, model, a mesh on a locked accelerator kind) hashes without a
    relock. fix: how to add a missing input; other_fix: what to do when the
    lockfile belongs to another spec set (it must not be overwritten).
    """
    lockfile = where.file or "the lockfile"
    if tuple(lock.spec_set.paths) != tuple(rel_paths) and other_fix:
        fix = (f"the lockfile belongs to another spec set ({' '.join(lock.spec_set.paths)}), not "
               f"{' '.join(rel_paths)}; {other_fix}")
    return missing_input_problems(lock, unlocked, fix, lockfile)


def missing_input_problems(lock: Lock, unlocked: SpecSet, fix: str, lockfile: str = "the lockfile") -> list[Problem]:
    """One problem per input that some run reads and the lock has no entry for, at the first such run's spec."""
    readers: dict[str, list[tuple[CompiledRun, str]]] = {}
    for run in unlocked.runs:
        for what, field in lock.missing_inputs(run.spec):
            readers.setdefault(what, []).append((run, field))
    problems = []
    for what, runs in readers.items():
        first, field = runs[0]
        others = f" (and {len(runs) - 1} more run{'s' if len(runs) > 2 else ''})" if len(runs) > 1 else ""
        problems.append(Problem(first.location, f"runs[{first.name}].{field}",
                                f"{what}{others} is not in {lockfile}; {fix}"))
    return problems


def covers(lock: Lock, unlocked: SpecSet) -> bool:
    """The lock was written for every run of the set (by name) and holds every input they read."""
    return bool(unlocked.runs) and all(
        run.name in lock.spec_set.runs and not lock.missing_inputs(run.spec) for run in unlocked.runs
    )


def find_matching_lock(unlocked: SpecSet, folders: Iterable[pathlib.Path]) -> tuple[Lock, tuple[pathlib.Path, ...]] | None:
    """A lock for the set's runs among the lockfiles in `folders`: written for those runs, holding their inputs.

    One lockfile covering every run is preferred (a copied or renamed spec
    set, one file of a locked folder). Otherwise each run is taken from the
    first lockfile (by name) written for it that holds its inputs, and those
    locks are combined — `runix compile specs/a specs/b` works from
    a.lock.json and b.lock.json — provided they agree on every shared input
    and on the environment. None when some run is in no lockfile.
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
    for run in unlocked.runs:
        for path, lock in candidates:
            if run.name in lock.spec_set.runs and not lock.missing_inputs(run.spec):
                chosen[path] = lock
                break
        else:
            return None
    merged = merge_locks(list(chosen.values()))
    return None if merged is None else (merged, tuple(chosen))


def merge_locks(locks: Sequence[Lock]) -> Lock | None:
    """One lock from several that agree on shared inputs and on the environment (else None)."""
    if not locks or any(lock.environment.runtime != locks[0].environment.runtime for lock in locks):
        return None
    sources: dict[str, LockedInput] = {}
    tokenizers: dict[str, LockedInput] = {}
    numerics: dict[str, dict[str, Any]] = {}
    for lock in locks:
        for merged, entries in ((sources, lock.sources), (tokenizers, lock.tokenizers)):
            for key, entry in entries.items():
                if key in merged and merged[key].digest != entry.digest:
                    return None
                merged.setdefault(key, entry)
        for kind, entry in lock.environment.numerics.items():
            if kind in numerics and numerics[kind]["facts"] != entry["facts"]:
                return None
            numerics.setdefault(kind, entry)
    paths = tuple(sorted({p for lock in locks for p in lock.spec_set.paths}))
    runs = {name: digest for lock in reversed(locks) for name, digest in lock.spec_set.runs.items()}
    return Lock(spec_set=SpecSetRecord(paths=paths, runs=runs), sources=sources, tokenizers=tokenizers,
                environment=Environment(runtime=dict(locks[0].environment.runtime), numerics=numerics))


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
    """How this machine differs from the lock in what enters the hash of `runs`: runtime versions, numerics bits.

    Launch calls it before training `runs`: this host's facts are read once
    per accelerator kind the runs use and turned into each run mesh's bits,
    exactly as the lock's are. Cheap: distribution metadata and
    /proc/cpuinfo, no jax import. A run trained under other versions or on a
    CPU with other vector units would not be the run its hash names.
    """
    from compiler.environment import numerics_facts, runtime_versions

    drifts = _runtime_drift(lock.environment.runtime, runtime_versions())
    meshes: dict[str, dict[str, Any]] = {}
    for run in runs:
        meshes.setdefault(accelerator_name(run.spec.mesh), {})[canonical_json(run.spec.mesh.model_dump(mode="json"))] = run.spec.mesh
    for kind, by_json in sorted(meshes.items()):
        locked = lock.environment.numerics.get(kind)
        if locked is None:
            drifts.append(Drift(f"numerics [{kind}]", None, None, "not in the lockfile; run `runix lock`"))
            continue
        here = numerics_facts(kind)
        changed: set[str] = set()
        first: tuple[dict[str, Any], dict[str, Any]] | None = None
        for mesh in by_json.values():
            a, b = numerics_bits(locked, mesh), numerics_bits(here, mesh)
            keys = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
            if keys and first is None:
                first = (a, b)
            changed |= keys
        if first is not None:
            drifts.append(Drift(f"numerics [{kind}]", _short_json(first[0]), _short_json(first[1]),
                                f"differs in {', '.join(sorted(changed))}"))
    return drifts


def _runtime_drift(old: Mapping[str, str | None], new: Mapping[str, str | None]) -> list[Drift]:
    return [Drift(f"runtime {package}", old.get(package) or "(absent)", new.get(package) or "(absent)")
            for package in sorted(set(old) | set(new)) if old.get(package) != new.get(package)]


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
    drifts += _runtime_drift(old.environment.runtime, new.environment.runtime)
    for kind in sorted(set(old.environment.numerics) | set(new.environment.numerics)):
        a, b = old.environment.numerics.get(kind), new.environment.numerics.get(kind)
        facts_a, facts_b = (x["facts"] if x is not None else None for x in (a, b))
        if facts_a != facts_b:
            if a is None or b is None:
                note = "new input" if a is None else "no longer used"
            else:
                note = "differs in " + ", ".join(sorted(k for k in set(facts_a) | set(facts_b) if facts_a.get(k) != facts_b.get(k)))
            drifts.append(Drift(f"numerics [{kind}]", facts_a and _short_json(facts_a), facts_b and _short_json(facts_b), note))
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
