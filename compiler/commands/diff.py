"""`runix diff A B`: which fields differ, which of them changed the hash, and what re-hashes with it.

This answers "why did my hash change?" (asked of Marin's executor in its PR
#2219): the hash is sha256 over `compiler.canonical.hash_document`, so two
runs are compared field by field both in their resolved specs and in their
hash documents. A field that differs in the spec but not in the hash document
is metadata (marked NOT_HASHED in compiler.spec: name, description, tags,
checkpoint cadence, the preset label, ...). A parent named by run is hashed
through the parent's hash (`init.parent`), so renaming a parent changes
nothing while retraining it differently re-hashes every descendant.

Each of A and B is one of
    PATH            a spec file or folder (a spec set)
    PATH:RUN        the run RUN of the spec set at PATH
    RUN or HASH     a run name, or a hash (a unique prefix of at least 6 hex digits),
                    looked up in the spec set given with --in PATH..., else (a hash)
                    among the built runs of the store given with --store URL:
                    its spec.json and lock.json, exactly what was hashed and trained
    LOCKFILE        a lockfile (`*.lock.json`, e.g. last month's copy) as A: the
                    spec set B hashed under that lock (why did the data change my hash?)
`runix diff --store S 5d42ab c81f07` explains why two stored runs differ;
`runix diff --store S 5d42ab specs/tiny:tiny-code` why a stored run's hash is
not today's; `runix diff old.lock.json specs/tiny` what relocking changed.
Two runs are compared field by field (e.g. `runix diff specs/tiny:tiny-code
specs/tiny:tiny-code-text`). Two spec sets (e.g. the old and the new version of
a folder: `runix diff old/specs specs`) are compared run by run, matched by
name: which runs changed their own hashed fields, which re-hash only because
a parent's hash changed, which differ only in metadata, which were added or
removed. Two spec sets of one run each are compared as two runs. When two
runs differ through their parents, diff recurses up both initialization
chains (in the spec sets, else in the store) and names what changed in each
ancestor: "parent tiny-code: inputs.sources.code.digest 5d42… → b2f9…".
Exit 0 whether or not anything differs; 2 for bad input.

Locked inputs. Hashes are `runix hash`'s: each spec set is read with its
lockfile (compiler.lock), and the hash document includes the run's locked
inputs, so a changed data digest, tokenizer, runtime version or numerics
shows up as a hashed field `inputs.…`. Unlike hash, compile and launch, diff
does not refuse a spec set without a usable lockfile (an old copy of a
folder, a spec naming an input its lock has no entry for yet): it is a
question-answering tool. When any side has no usable lock, BOTH sides are
compared by their hash documents without locked inputs, so the comparison
stays like for like, and one line says which side had no lock
and that inputs were not compared. Spec errors are still errors (exit 2).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from compiler.canonical import hash_document
from compiler.lock import lock_spec_set
from compiler.problems import Location, Problem, SpecError
from compiler.specset import CompiledRun, InputsFor, SpecSet, compile_documents, read_documents

HASHED, NOT_HASHED, VIA_PARENT = "changes the hash", "not hashed", "hashed as the parent's hash"
LOCATION = "location only: same locked content, not hashed"
_LOCATIONS = re.compile(r"^data\.(sources\.[^.]+\.uri|tokenizer)$")
_MISSING = object()
_HEX = re.compile(r"^[0-9a-f]{6,64}$")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "diff", help="which fields differ between two runs or spec sets, and which of them changed the hash",
        description="Compare two runs (PATH:RUN, or RUN/HASH with --in) or two spec sets (PATH PATH, runs matched "
                    "by name): the fields that differ, which changed the hash, which descendants re-hash.",
    )
    parser.add_argument("a", metavar="A", help="PATH, PATH:RUN, RUN/HASH (with --in), HASH (with --store), or a LOCKFILE")
    parser.add_argument("b", metavar="B", help="PATH, PATH:RUN, RUN/HASH (with --in) or HASH (with --store)")
    parser.add_argument("--in", dest="search", nargs="+", metavar="PATH", default=(),
                        help="spec files or folders in which bare run names and hashes are looked up")
    parser.add_argument("--store", metavar="URL",
                        help="store (fsspec URL) in which bare hashes and parents are looked up; "
                             "default: <project>/.runix/store for parents only")
    parser.set_defaults(func=run)


# --------------------------------------------------------------------------- comparing


@dataclasses.dataclass(frozen=True)
class FieldChange:
    path: str  # dotted field path, e.g. schedule.phases[0].peak
    a: Any  # _MISSING when the field is absent on that side
    b: Any
    effect: str  # HASHED, NOT_HASHED, LOCATION or VIA_PARENT


def _flatten(a: Any, b: Any, path: str, out: list[tuple[str, Any, Any]]) -> None:
    """Leaf-by-leaf differences of two JSON values; a key present on one side only is one entry."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            _flatten(a.get(key, _MISSING), b.get(key, _MISSING), sub, out)
    elif isinstance(a, list) and isinstance(b, list):
        for index in range(max(len(a), len(b))):
            _flatten(a[index] if index < len(a) else _MISSING, b[index] if index < len(b) else _MISSING,
                     f"{path}[{index}]", out)
    elif a is _MISSING or b is _MISSING or a != b or type(a) is not type(b):
        out.append((path, a, b))


def _spec_data(run: CompiledRun) -> dict[str, Any]:
    return run.spec.model_dump(mode="json")


def _hash_data(run: CompiledRun, inputs_for: InputsFor | None) -> dict[str, Any]:
    """The document the run's hash is sha256 of: with its locked inputs when `inputs_for` is its lock's."""
    inputs = inputs_for(run.spec) if inputs_for is not None else None
    return json.loads(json.dumps(hash_document(run.spec, run.parent_hash, inputs)))


def field_changes(a: CompiledRun, b: CompiledRun, inputs_a: InputsFor | None = None,
                  inputs_b: InputsFor | None = None) -> list[FieldChange]:
    """Every field in which two resolved runs differ, each marked with whether it changed the hash.

    inputs_a/inputs_b: the locked inputs of each side (`Lock.inputs_for`), or
    None for runs hashed without a lock; give both or neither, as the runs
    were hashed.
    """
    spec_diffs: list[tuple[str, Any, Any]] = []
    _flatten(_spec_data(a), _spec_data(b), "", spec_diffs)
    hash_a, hash_b = _hash_data(a, inputs_a), _hash_data(b, inputs_b)
    hash_diffs: list[tuple[str, Any, Any]] = []
    _flatten(hash_a, hash_b, "", hash_diffs)
    hashed_paths = {path for path, _, _ in hash_diffs}
    changes = []
    parent_init = any(isinstance(doc["run"].get("init"), Mapping) and "parent" in doc["run"]["init"]
                      for doc in (hash_a, hash_b))
    for path, va, vb in spec_diffs:
        if f"run.{path}" in hashed_paths:
            effect = HASHED
        elif parent_init and path in ("init.run", "init.hash"):
            effect = VIA_PARENT
        elif _within_hashed(path, hashed_paths):
            effect = HASHED
        elif _LOCATIONS.match(path) and inputs_a is not None and inputs_b is not None:
            effect = LOCATION  # compiler.canonical: a locked input enters by its digest, which is the same
        else:
            effect = NOT_HASHED
        changes.append(FieldChange(path, va, vb, effect))
    spec_paths = {f"run.{c.path}" for c in changes}
    for path, va, vb in hash_diffs:  # what only the hash document has: the parent's hash, inputs, schema version
        if path not in spec_paths and not any(path.startswith(p + ".") or path.startswith(p + "[") for p in spec_paths):
            shown = path.removeprefix("run.")
            changes.append(FieldChange(shown, va, vb, HASHED))
    # An optional field left out on one side and null on the other is the same spec (init.hash of a scratch
    # run vs a parent given by name); the hash document would say so if it were not.
    changes = [c for c in changes if c.effect == HASHED or {id(c.a), id(c.b)} != {id(_MISSING), id(None)}]
    return sorted(changes, key=lambda c: c.path)


def _within_hashed(path: str, hashed_paths: set[str]) -> bool:
    """A spec entry present on one side only (a whole source, say) is hashed if any hashed leaf lies under it."""
    prefix = f"run.{path}"
    return any(p.startswith(prefix + ".") or p.startswith(prefix + "[") for p in hashed_paths)


@dataclasses.dataclass(frozen=True)
class RunComparison:
    name: str
    old: CompiledRun | None
    new: CompiledRun | None
    changes: tuple[FieldChange, ...]

    @property
    def kind(self) -> str:
        """added, removed, unchanged, metadata (differs but same hash), changed, or via-parent."""
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        if self.old.hash == self.new.hash:
            return "metadata" if self.changes else "unchanged"
        own = [c for c in self.changes if c.effect == HASHED and c.path != "init.parent"]
        return "changed" if own else "via-parent"


def compare_sets(old: SpecSet, new: SpecSet, old_inputs: InputsFor | None = None,
                 new_inputs: InputsFor | None = None) -> list[RunComparison]:
    """Runs matched by name, in the new set's order (parents first), then the removed ones.

    old_inputs/new_inputs: each set's `Lock.inputs_for` when it was hashed with its lock.
    """
    old_runs, new_runs = old.by_name(), new.by_name()
    out = []
    for run in new.runs:
        before = old_runs.get(run.name)
        changes = tuple(field_changes(before, run, old_inputs, new_inputs)) if before else ()
        out.append(RunComparison(run.name, before, run, changes))
    out.extend(RunComparison(run.name, run, None, ()) for run in old.runs if run.name not in new_runs)
    return out


# --------------------------------------------------------------------------- operands


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A spec set as diff reads it: hashed with its lock when it has a usable one, and without."""

    paths: tuple[str, ...]
    unlocked: SpecSet  # hashes without locked inputs
    locked: SpecSet | None  # `runix hash`'s hashes; None when there is no usable lock
    inputs_for: InputsFor | None  # the lock's Lock.inputs_for
    no_lock: str | None  # why there is no usable lock (None when locked)


def load_specs(paths: Sequence[str], lockfile: str | None = None) -> Loaded:
    """The one place diff reads spec sets: spec problems are errors, a missing lock or lock entry is not."""
    documents = read_documents(paths)
    unlocked = compile_documents(documents)
    try:
        locked = lock_spec_set(paths, documents, unlocked, lockfile)
    except SpecError as err:
        return Loaded(tuple(map(str, paths)), unlocked, None, None, _why_no_lock(err))
    return Loaded(tuple(map(str, paths)), unlocked, locked.spec_set, locked.lock.inputs_for, None)


def _why_no_lock(err: SpecError) -> str:
    """One short clause from the lock module's problems (they name the lockfile and how to relock)."""
    problems = err.problems
    first = problems[0]
    if all(" is not in " in p.message for p in problems):
        lockfile = first.message.split(" is not in ", 1)[1].split(";", 1)[0]
        missing = "; ".join(p.message.split(" is not in ", 1)[0] for p in problems)
        return f"its lockfile {lockfile} has no entry for {missing}"
    if first.message.startswith("no lockfile"):
        return "it has no lockfile"
    return f"{first.location.file}: {first.message.split(';')[0]}"


@dataclasses.dataclass(frozen=True)
class Stored:
    """A built run read back from the store: exactly what was hashed (spec.json) with what was locked (lock.json)."""

    run: CompiledRun
    inputs: Mapping[str, Any]

    def inputs_for(self, spec) -> Mapping[str, Any]:
        return self.inputs


@dataclasses.dataclass(frozen=True)
class Operand:
    label: str
    loaded: Loaded | None  # None for a stored run
    run_name: str | None  # None: the whole spec set
    locked: bool = True  # compare the hashes with locked inputs (every operand has a usable lock)
    stored: Stored | None = None

    @property
    def specs(self) -> SpecSet:
        if self.stored is not None:
            return SpecSet((self.stored.run,))
        return self.loaded.locked if self.locked else self.loaded.unlocked

    @property
    def inputs_for(self) -> InputsFor | None:
        if self.stored is not None:
            return self.stored.inputs_for
        return self.loaded.inputs_for if self.locked else None

    @property
    def run(self) -> CompiledRun | None:
        if self.stored is not None:
            return self.stored.run
        return None if self.run_name is None else self.specs.by_name()[self.run_name]


class Reader:
    """Where diff reads operands: spec sets (cached by paths) and, lazily, the store."""

    def __init__(self, store_url: str | None):
        self.store_url = store_url
        self._loaded: dict[tuple[tuple[str, ...], str | None], Loaded] = {}
        self._stored: dict[str, Stored] = {}
        self._store = None

    def specs(self, paths: Sequence[str], lockfile: str | None = None) -> Loaded:
        key = (tuple(paths), lockfile)
        if key not in self._loaded:
            self._loaded[key] = load_specs(paths, lockfile)
        return self._loaded[key]

    def store(self, required: bool = True):
        if self._store is None and (required or self.store_url is not None or _default_store_exists()):
            from compiler.commands.store import open_store

            self._store = open_store(self.store_url)
        return self._store

    def stored(self, prefix: str) -> Stored:
        """A built run of the store by hash (prefix), through the store's public reading API (verified)."""
        store = self.store()
        run_hash = store.resolve(prefix)
        if run_hash not in self._stored:
            self._stored[run_hash] = stored_run(store.read_json(run_hash, "spec.json"), store.read_json(run_hash, "lock.json"),
                                                f"{store.url}:{run_hash[:12]}")
        return self._stored[run_hash]

    def stored_parent(self, parent_hash: str) -> Stored | None:
        """The parent from the store, when there is a store and it holds the parent built; else None."""
        try:
            store = self.store(required=False)
            if store is None or not store.is_built(parent_hash):
                return None
            return self.stored(parent_hash)
        except SpecError:
            return None


def _default_store_exists() -> bool:
    from compiler.lock import project_root
    from compiler.store import default_store_url

    url = default_store_url(project_root(pathlib.Path.cwd()))
    return "://" not in url and pathlib.Path(url).is_dir()


def stored_run(spec_json: Mapping[str, Any], lock_json: Mapping[str, Any], where: str) -> Stored:
    """A store entry's spec.json + lock.json as a run diff can compare; a damaged one is bad input."""
    from pydantic import ValidationError

    from compiler.spec import RunSpec

    try:
        spec = RunSpec.model_validate(spec_json["spec"])
        run = CompiledRun(spec, spec_json["hash"], spec_json.get("parent_hash"), None, Location(where))
        inputs = dict(lock_json["inputs"])
    except (KeyError, TypeError, ValidationError) as err:
        raise SpecError([Problem(Location(where), "", f"cannot read the stored run: {err.__class__.__name__}: "
                                                      f"{str(err).splitlines()[0]}")]) from None
    return Stored(run, inputs)


def resolve_operand(text: str, search: Sequence[str], sources: Reader, other: str | None = None) -> Operand:
    """What an operand names; `other` is the other operand's text (a LOCKFILE operand applies to its spec set)."""
    if text.endswith(LOCKFILE_SUFFIX) and pathlib.Path(text).is_file():
        target = other.rpartition(":")[0] if other and not pathlib.Path(other).exists() else other
        if not target or not pathlib.Path(target).exists():
            raise SpecError([Problem(Location(text), "", "a lockfile operand is compared with a spec set: "
                                                         "write `runix diff OLD.lock.json PATH[:RUN]`")])
        loaded = sources.specs([target], text)
        name = other.rpartition(":")[2] if target != other else None
        return Operand(f"{target} under {text}", loaded, None if name is None else _find(loaded, name, other, Location(target)))
    if pathlib.Path(text).exists():
        return Operand(text, sources.specs([text]), None)
    path, sep, name = text.rpartition(":")
    if sep and path and pathlib.Path(path).exists():
        loaded = sources.specs([path])
        return Operand(text, loaded, _find(loaded, name, text, Location(path)))
    if search:
        loaded = sources.specs(list(search))
        if not (_HEX.match(text) and sources.store_url is not None and _find_or_none(loaded, text) is None):
            return Operand(text, loaded, _find(loaded, text, text, Location(" ".join(search))))
    if _HEX.match(text) and sources.store_url is not None:
        stored = sources.stored(text)
        return Operand(f"{stored.run.name} in the store", None, stored.run.name, stored=stored)
    raise SpecError([Problem(Location(text), "", "no such file or folder; to name a run or a hash, write PATH:RUN, "
                                                 "give the spec set with --in PATH, or a store with --store URL")])


LOCKFILE_SUFFIX = ".lock.json"


def _find_or_none(loaded: Loaded, key: str) -> str | None:
    try:
        return _find(loaded, key, key, Location(""))
    except SpecError:
        return None


def like_for_like(operands: Sequence[Operand]) -> tuple[list[Operand], str | None]:
    """Every operand with locked inputs, or (when one has no usable lock) every operand without.

    Returns the operands and, when falling back, the one line saying so.
    """
    missing = [op for op in operands if op.loaded is not None and op.loaded.locked is None]
    if not missing:
        return list(operands), None
    stored = [op for op in operands if op.stored is not None]
    if stored:
        why = "; ".join(f"{' '.join(op.loaded.paths)}: {op.loaded.no_lock}" for op in missing)
        raise SpecError([Problem(Location(missing[0].label), "", f"no usable lock ({why}); a stored run is compared with "
                                                                 f"runs hashed with their locked inputs: run `runix lock` first")])
    seen: dict[tuple[str, ...], Loaded] = {}
    for op in missing:
        seen.setdefault(op.loaded.paths, op.loaded)
    why = "; ".join(f"{' '.join(loaded.paths)}: {loaded.no_lock}" for loaded in seen.values())
    note = (f"no usable lock ({why}): comparing hashes without locked inputs on both sides (data, tokenizer, runtime "
            f"and numerics are not compared; these are not `runix hash`'s hashes)")
    return [dataclasses.replace(op, locked=False) for op in operands], note


def _find(loaded: Loaded, key: str, label: str, where: Location) -> str:
    """The name of the run `key` names: a run name, or a hash prefix (locked hashes first, then lock-free)."""
    by_name = loaded.unlocked.by_name()
    if key in by_name:
        return key
    if _HEX.match(key):
        for specs in (loaded.locked, loaded.unlocked):
            matches = [run for run in (specs.runs if specs is not None else ()) if run.hash.startswith(key)]
            if len(matches) == 1:
                return matches[0].name
            if len(matches) > 1:
                raise SpecError([Problem(where, "", f"{label}: hash prefix {key} is ambiguous: "
                                                    f"{', '.join(run.name for run in matches)}")])
    names = ", ".join(sorted(by_name))
    raise SpecError([Problem(where, "", f"{label}: no run named {key!r} (or with that hash) here; runs: {names}")])


# --------------------------------------------------------------------------- command


def run(args, console) -> int:
    if not console.is_terminal:  # a log or a pipe: keep one field per line
        console.width = max(console.width, 160)
    sources = Reader(args.store)
    a = resolve_operand(args.a, args.search, sources, other=args.b)
    b = resolve_operand(args.b, args.search, sources)
    (a, b), note = like_for_like([a, b])
    if note is not None:
        from rich.text import Text

        console.print(Text(f"note: {note}", style="yellow"), soft_wrap=True)
    if a.run is None and b.run is None and (len(a.specs.runs) > 1 or len(b.specs.runs) > 1):
        _print_sets(a, b, console)
        return 0
    run_a = _pair(a, like=b.run.name if b.run is not None else None)
    run_b = _pair(b, like=run_a.name)
    _print_pair(a, run_a, b, run_b, console, sources)
    return 0


def _pair(operand: Operand, like: str | None = None) -> CompiledRun:
    if operand.run is not None:
        return operand.run
    if len(operand.specs.runs) == 1:
        return operand.specs.runs[0]
    if like is not None and like in operand.specs.by_name():
        return operand.specs.by_name()[like]
    raise SpecError([Problem(Location(operand.label), "", f"holds {len(operand.specs.runs)} runs; name one as "
                                                          f"{operand.label}:RUN, or compare it with another spec set")])


def _show(value: Any, width: int = 48) -> str:
    if value is _MISSING:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
        return value[:12]
    return text if len(text) <= width else text[: width - 1] + "…"


def _changes_table(changes: Sequence[FieldChange], title: str):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for header in ("field", "A", "B", "effect"):
        table.add_column(header, overflow="fold")
    for change in changes:
        style = "bold" if change.effect == HASHED else "dim" if change.effect in (NOT_HASHED, LOCATION) else ""
        table.add_row(Text(change.path), Text(_show(change.a)), Text(_show(change.b)), Text(change.effect, style=style))
    return table


@dataclasses.dataclass(frozen=True)
class Side:
    """One run with where its parent is found: its spec set (by name), else the store (by hash)."""

    run: CompiledRun
    inputs_for: InputsFor | None
    specs: SpecSet | None  # None for a stored run


def parent_side(side: Side, sources: Reader) -> Side | None:
    run = side.run
    if run.parent_hash is None:
        return None
    if side.specs is not None and run.parent_name is not None:
        parent = side.specs.by_name().get(run.parent_name)
        if parent is not None:
            return Side(parent, side.inputs_for, side.specs)
    stored = sources.stored_parent(run.parent_hash)
    return None if stored is None else Side(stored.run, stored.inputs_for, None)


def explain_parents(a: Side, b: Side, sources: Reader, limit: int = 64) -> list[str]:
    """Why two runs' parents hash apart, ancestor by ancestor, up both chains (iterative, at most `limit` levels).

    One line per ancestor pair whose hashes differ: its own hashed field
    changes, then on to its parents when those differ too.
    """
    lines: list[str] = []
    depth = 0
    while depth < limit and a.run.parent_hash is not None and b.run.parent_hash is not None \
            and a.run.parent_hash != b.run.parent_hash:
        indent = "  " * depth
        pa, pb = parent_side(a, sources), parent_side(b, sources)
        label = pa.run.name if pa is not None else (pb.run.name if pb is not None else a.run.parent_hash[:12])
        if label != (pb.run.name if pb is not None else label):
            label = f"{label} / {pb.run.name}"
        if pa is None or pb is None:
            missing = " and ".join(x for x, p in (("A's", pa), ("B's", pb)) if p is None)
            lines.append(f"{indent}parent {label}: {a.run.parent_hash[:12]} → {b.run.parent_hash[:12]} "
                         f"({missing} parent is in neither its spec set nor the store; give --store URL to look there)")
            break
        changes = [c for c in field_changes(pa.run, pb.run, pa.inputs_for, pb.inputs_for) if c.effect == HASHED]
        own = [c for c in changes if c.path != "init.parent"]
        shown = "; ".join(f"{c.path} {_show(c.a)} → {_show(c.b)}" for c in own)
        via = "its own parent's hash differs" if any(c.path == "init.parent" for c in changes) else ""
        lines.append(f"{indent}parent {label}: " + ("; ".join(x for x in (shown, via) if x) or "no hashed field differs"))
        a, b, depth = pa, pb, depth + 1
    return lines


def _print_pair(op_a: Operand, a: CompiledRun, op_b: Operand, b: CompiledRun, console, sources: Reader | None = None) -> None:
    from rich.text import Text

    changes = field_changes(a, b, op_a.inputs_for, op_b.inputs_for)
    b_specs = op_b.specs
    lines = [f"A  {a.short_hash}  {a.name}  ({op_a.label})", f"B  {b.short_hash}  {b.name}  ({op_b.label})"]
    if a.hash == b.hash:
        lines.append("same hash: they train the same bits" + (" (the fields below are not hashed)" if changes else ""))
        moved = [c.path for c in changes if c.effect == LOCATION]
        if moved and len(moved) == len(changes):
            lines.append(f"only the location changed ({', '.join(moved)}): the lock pinned the same content")
    else:
        hashed = sorted({c.path for c in changes if c.effect == HASHED})
        lines.append(f"hash changed by: {', '.join(hashed)}")
        if "init.parent" in hashed:
            lines.append(f"init.parent: the parent's hash differs ({a.parent_name or a.parent_hash[:12] if a.parent_hash else '-'} → "
                         f"{b.parent_name or b.parent_hash[:12] if b.parent_hash else '-'}); up the chain:")
            side_a = Side(a, op_a.inputs_for, op_a.specs if op_a.stored is None else None)
            side_b = Side(b, op_b.inputs_for, op_b.specs if op_b.stored is None else None)
            lines += ["  " + line for line in explain_parents(side_a, side_b, sources or Reader(None))]
    console.print(Text("\n".join(lines)), soft_wrap=True)
    if changes:
        console.print(_changes_table(changes, f"{len(changes)} fields differ"))
    else:
        console.print(Text("no field differs"), soft_wrap=True)
    if a.hash != b.hash and op_b.stored is None:
        descendants = b_specs.descendants(b.name)
        if descendants:
            names = ", ".join(f"{d.name} ({d.short_hash})" for d in descendants)
            console.print(Text(f"descendants of {b.name} in B's spec set, whose hashes contain its hash: {names}"), soft_wrap=True)
        else:
            console.print(Text(f"{b.name} has no descendants in B's spec set"), soft_wrap=True)


def _print_sets(a: Operand, b: Operand, console) -> None:
    from rich.text import Text

    comparisons = compare_sets(a.specs, b.specs, a.inputs_for, b.inputs_for)
    groups: dict[str, list[RunComparison]] = {}
    for comparison in comparisons:
        groups.setdefault(comparison.kind, []).append(comparison)
    counts = ", ".join(f"{len(groups.get(kind, []))} {label}" for kind, label in (
        ("unchanged", "unchanged"), ("changed", "changed"), ("via-parent", "re-hashed through a parent"),
        ("metadata", "metadata only"), ("added", "added"), ("removed", "removed")))
    console.print(Text(f"A = {a.label} ({len(a.specs.runs)} runs), B = {b.label} ({len(b.specs.runs)} runs): {counts}"), soft_wrap=True)
    for comparison in groups.get("changed", []):
        old, new = comparison.old, comparison.new
        console.print(_changes_table(comparison.changes,
                                     f"changed: {comparison.name}  {old.short_hash} → {new.short_hash}"))
    lines = []
    for comparison in groups.get("via-parent", []):
        old, new = comparison.old, comparison.new
        metadata = [c.path for c in comparison.changes if c.effect != HASHED]
        lines.append(f"re-hashed through its parent: {comparison.name}  {old.short_hash} → {new.short_hash} "
                     f"(parent {new.parent_name or new.parent_hash[:12]})"
                     + (f"; also differs, not hashed: {', '.join(metadata)}" if metadata else ""))
    for comparison in groups.get("metadata", []):
        fields = ", ".join(c.path for c in comparison.changes)
        lines.append(f"same hash, metadata differs: {comparison.name} ({fields})")
    for comparison in groups.get("added", []):
        lines.append(f"added: {comparison.name}  {comparison.new.short_hash}")
    for comparison in groups.get("removed", []):
        lines.append(f"removed: {comparison.name}  {comparison.old.short_hash}")
    if lines:
        console.print(Text("\n".join(lines)), soft_wrap=True)
