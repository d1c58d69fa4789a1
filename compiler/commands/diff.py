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
                    looked up in the spec set given with --in PATH...
Two runs are compared field by field (e.g. `runix diff specs/tiny:tiny-code
specs/tiny:tiny-code-text`). Two spec sets (e.g. the old and the new version of
a folder: `runix diff old/specs specs`) are compared run by run, matched by
name: which runs changed their own hashed fields, which re-hash only because
a parent's hash changed, which differ only in metadata, which were added or
removed. Two spec sets of one run each are compared as two runs. Exit 0
whether or not anything differs; 2 for bad input.

Locked inputs. Hashes are `runix hash`'s: each spec set is read with its
lockfile (compiler.lock), and the hash document includes the run's locked
inputs, so a changed data digest, tokenizer, runtime version or numerics
shows up as a hashed field `inputs.…`. Unlike hash, compile and launch, diff
does not refuse a spec set without a usable lockfile (an old copy of a
folder, a lock gone stale after an edit): it is a question-answering tool.
When any side has no usable lock, BOTH sides are compared by their hash
documents without locked inputs (the `spec_sha256` a lockfile records), so
the comparison stays like for like, and one line says which side had no lock
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
    parser.add_argument("a", metavar="A", help="PATH, PATH:RUN, or RUN/HASH (with --in)")
    parser.add_argument("b", metavar="B", help="PATH, PATH:RUN, or RUN/HASH (with --in)")
    parser.add_argument("--in", dest="search", nargs="+", metavar="PATH", default=(),
                        help="spec files or folders in which bare run names and hashes are looked up")
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
    unlocked: SpecSet  # hashes without locked inputs (a lockfile's spec_sha256)
    locked: SpecSet | None  # `runix hash`'s hashes; None when there is no usable lock
    inputs_for: InputsFor | None  # the lock's Lock.inputs_for
    no_lock: str | None  # why there is no usable lock (None when locked)


def load_specs(paths: Sequence[str]) -> Loaded:
    """The one place diff reads spec sets: spec problems are errors, a missing or stale lock is not."""
    documents = read_documents(paths)
    unlocked = compile_documents(documents)
    try:
        locked = lock_spec_set(paths, documents, unlocked)
    except SpecError as err:
        return Loaded(tuple(map(str, paths)), unlocked, None, None, _why_no_lock(err))
    return Loaded(tuple(map(str, paths)), unlocked, locked.spec_set, locked.lock.inputs_for, None)


def _why_no_lock(err: SpecError) -> str:
    """One short clause from the lock module's problems (they name the lockfile and how to relock)."""
    problems = err.problems
    first = problems[0]
    if all("stale lock" in p.message for p in problems):
        runs = f"{len(problems)} run{'s' if len(problems) != 1 else ''}"
        return f"its lockfile {first.location.file} is stale ({runs} changed since locking)"
    if first.message.startswith("no lockfile"):
        return "it has no lockfile"
    return f"{first.location.file}: {first.message.split(';')[0]}"


@dataclasses.dataclass(frozen=True)
class Operand:
    label: str
    loaded: Loaded
    run_name: str | None  # None: the whole spec set
    locked: bool = True  # compare the hashes with locked inputs (every operand has a usable lock)

    @property
    def specs(self) -> SpecSet:
        return self.loaded.locked if self.locked else self.loaded.unlocked

    @property
    def inputs_for(self) -> InputsFor | None:
        return self.loaded.inputs_for if self.locked else None

    @property
    def run(self) -> CompiledRun | None:
        return None if self.run_name is None else self.specs.by_name()[self.run_name]


def resolve_operand(text: str, search: Sequence[str], cache: dict[tuple[str, ...], Loaded]) -> Operand:
    def specs(paths: Sequence[str]) -> Loaded:
        key = tuple(paths)
        if key not in cache:
            cache[key] = load_specs(paths)
        return cache[key]

    if pathlib.Path(text).exists():
        return Operand(text, specs([text]), None)
    path, sep, name = text.rpartition(":")
    if sep and path and pathlib.Path(path).exists():
        loaded = specs([path])
        return Operand(text, loaded, _find(loaded, name, text, Location(path)))
    if not search:
        raise SpecError([Problem(Location(text), "", "no such file or folder; to name a run or a hash, write PATH:RUN "
                                                     "or give the spec set with --in PATH")])
    loaded = specs(list(search))
    return Operand(text, loaded, _find(loaded, text, text, Location(" ".join(search))))


def like_for_like(operands: Sequence[Operand]) -> tuple[list[Operand], str | None]:
    """Every operand with locked inputs, or (when one has no usable lock) every operand without.

    Returns the operands and, when falling back, the one line saying so.
    """
    missing = [op for op in operands if op.loaded.locked is None]
    if not missing:
        return list(operands), None
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
    cache: dict[tuple[str, ...], Loaded] = {}
    a = resolve_operand(args.a, args.search, cache)
    b = resolve_operand(args.b, args.search, cache)
    (a, b), note = like_for_like([a, b])
    if note is not None:
        from rich.text import Text

        console.print(Text(f"note: {note}", style="yellow"), soft_wrap=True)
    if a.run is None and b.run is None and (len(a.specs.runs) > 1 or len(b.specs.runs) > 1):
        _print_sets(a, b, console)
        return 0
    run_a = _pair(a, like=b.run.name if b.run is not None else None)
    run_b = _pair(b, like=run_a.name)
    _print_pair(a, run_a, b, run_b, console)
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


def _print_pair(op_a: Operand, a: CompiledRun, op_b: Operand, b: CompiledRun, console) -> None:
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
            lines.append(f"init.parent: the parent's hash differs ({a.parent_name or '-'} → {b.parent_name or '-'}); "
                         "diff the parents to see why")
    console.print(Text("\n".join(lines)), soft_wrap=True)
    if changes:
        console.print(_changes_table(changes, f"{len(changes)} fields differ"))
    else:
        console.print(Text("no field differs"), soft_wrap=True)
    if a.hash != b.hash:
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
