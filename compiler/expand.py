"""Authoring conveniences → plain runs: `extends`, `matrix`, `abstract`.

A spec file is a mapping with a `runs:` list. Each entry is a run, or:
  * `extends: <name>`: start from another entry (deep merge: mappings merge key
    by key unless their `kind` differs, any other value replaces), stating
    only what differs;
  * `matrix: {axis: {label: patch}}`: a grid; every combination of labels
    becomes a run, its patches merged in axis order, `{axis}` in the name
    (and in `extends`, `init.run`, `description`, `tags`) replaced by the label;
  * `abstract: true`: a base that only exists to be extended.

Expansion happens before validation and hashing, so a run written with
`extends`/`matrix` hashes exactly like the same run written out.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from compiler.problems import Location, Problem, SpecError
from compiler.yaml_source import Document, Path

AUTHORING_KEYS = ("extends", "matrix", "abstract")
_PLACEHOLDER_FIELDS: tuple[Path, ...] = (("name",), ("extends",), ("init", "run"), ("description",))
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclasses.dataclass(frozen=True)
class RawRun:
    """One expanded run before validation: plain data and where each value came from."""

    name: str
    data: dict[str, Any]
    origins: Mapping[Path, Location]
    entry: Location  # where the run (or its matrix template) is written

    def location(self, path: Sequence[str | int]) -> Location:
        path = tuple(path)
        for end in range(len(path), -1, -1):
            found = self.origins.get(path[:end])
            if found:
                return found
        return self.entry


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str
    data: dict[str, Any]  # without authoring keys
    extends: str | None
    abstract: bool
    origins: dict[Path, Location]
    entry: Location


def deep_merge(base: Any, patch: Any) -> Any:
    """Mappings merge key by key; anything else in `patch` replaces `base`.

    A mapping whose `kind` differs from the base's (a scratch init becoming a
    parent init) replaces it whole: fields of one variant mean nothing to another.
    """
    if isinstance(base, dict) and isinstance(patch, dict) and base.get("kind", patch.get("kind")) == patch.get("kind", base.get("kind")):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return patch


def expand_documents(documents: Sequence[Document]) -> list[RawRun]:
    """Every concrete run of the documents, in file order; raises SpecError with all problems."""
    problems: list[Problem] = []
    entries: list[_Entry] = []
    for document in documents:
        entries.extend(_entries_of(document, problems))

    by_name: dict[str, _Entry] = {}
    for entry in entries:
        if entry.name in by_name:
            first = by_name[entry.name]
            problems.append(Problem(entry.entry, f"runs[{entry.name}]", f"duplicate run name (also defined at {first.entry})"))
            continue
        by_name[entry.name] = entry

    resolved: dict[str, tuple[dict[str, Any], dict[Path, Location]]] = {}
    failed: set[str] = set()
    cycles: set[frozenset[str]] = set()

    def resolve(name: str) -> tuple[dict[str, Any], dict[Path, Location]] | None:
        """The entry merged onto its `extends` chain; None (with a problem) for a cycle or an unknown base.

        Iterative, so a chain of any length costs no Python recursion: walk up
        to a resolved base (or the root), then merge back down.
        """
        if name in resolved:
            return resolved[name]
        chain = [name]
        while True:
            entry = by_name[chain[-1]]
            base = entry.extends
            if name in failed or base in failed:
                failed.update(chain)
                return None
            if base is None or base in resolved:
                break
            if base in chain:
                cycle = chain[chain.index(base):] + [base]  # in extends order: a → b → a
                if frozenset(cycle) not in cycles:  # one problem per cycle, at the extends that closes it
                    cycles.add(frozenset(cycle))
                    problems.append(Problem(entry.origins.get(("extends",), entry.entry), f"runs[{entry.name}].extends",
                                            f"extends cycle: {' → '.join(cycle)}"))
                failed.update(chain)
                return None
            if base not in by_name:
                problems.append(Problem(
                    entry.origins.get(("extends",), entry.entry), f"runs[{entry.name}].extends",
                    f"extends unknown run {base!r}{_did_you_mean(base, by_name)}",
                ))
                failed.update(chain)
                return None
            chain.append(base)
        for link in reversed(chain):
            entry = by_name[link]
            if entry.extends is None:
                resolved[link] = (entry.data, entry.origins)
            else:
                base_data, base_origins = resolved[entry.extends]
                data = deep_merge({k: v for k, v in base_data.items() if k != "name"}, entry.data)
                resolved[link] = (data, {**base_origins, **entry.origins})
        return resolved[name]

    runs: list[RawRun] = []
    for entry in by_name.values():
        result = resolve(entry.name)
        if result is None or entry.abstract:
            continue
        data, origins = result
        runs.append(RawRun(entry.name, {**data, "name": entry.name}, origins, entry.entry))
    if problems:
        raise SpecError(problems)
    return runs


def _entries_of(document: Document, problems: list[Problem]) -> list[_Entry]:
    top = document.data
    if not isinstance(top, dict) or "runs" not in top:
        problems.append(Problem(document.location(()), "", "a spec file is a mapping with a `runs:` list"))
        return []
    extra = sorted(set(top) - {"runs"})
    for key in extra:
        problems.append(Problem(document.location((key,)), key, "unknown top-level key (only `runs` is allowed)"))
    runs = top["runs"]
    if not isinstance(runs, list) or not runs:
        problems.append(Problem(document.location(("runs",)), "runs", "`runs` must be a non-empty list of runs"))
        return []
    entries: list[_Entry] = []
    for index, raw in enumerate(runs):
        prefix = ("runs", index)
        where = document.location(prefix)
        if not isinstance(raw, dict):
            problems.append(Problem(where, f"runs[{index}]", "each run must be a mapping"))
            continue
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            problems.append(Problem(where, f"runs[{index}].name", "every run needs a `name` (a string)"))
            continue
        origins = {path[2:]: document.location(path) for path in document.lines if path[:2] == prefix}
        entries.extend(_expand_entry(raw, name, origins, where, problems))
    return entries


def _expand_entry(raw: dict[str, Any], name: str, origins: dict[Path, Location], where: Location,
                  problems: list[Problem]) -> list[_Entry]:
    field = f"runs[{name}]"
    extends = raw.get("extends")
    if extends is not None and not isinstance(extends, str):
        problems.append(Problem(origins.get(("extends",), where), f"{field}.extends", "must be the name of a run"))
        return []
    abstract = raw.get("abstract", False)
    if not isinstance(abstract, bool):
        problems.append(Problem(origins.get(("abstract",), where), f"{field}.abstract", "must be true or false"))
        return []
    body = {k: v for k, v in raw.items() if k not in AUTHORING_KEYS}
    matrix = raw.get("matrix")
    if matrix is None:
        return [_Entry(name, body, extends, abstract, origins, where)]

    axes = _matrix_axes(matrix, name, origins, where, problems)
    if axes is None:
        return []
    missing = [axis for axis in axes if "{" + axis + "}" not in name]
    if missing:
        problems.append(Problem(origins.get(("name",), where), f"{field}.name",
                                f"a matrix run's name must contain {', '.join('{' + a + '}' for a in missing)} so each run is named apart"))
        return []
    entries = []
    for combination in itertools.product(*(list(labels.items()) for labels in axes.values())):
        labels = {axis: label for axis, (label, _) in zip(axes, combination)}
        data = body
        combo_origins = dict(origins)
        for axis, (label, patch) in zip(axes, combination):
            data = deep_merge(data, patch)
            patch_prefix = ("matrix", axis, label)
            combo_origins.update({path[3:]: loc for path, loc in origins.items() if path[:3] == patch_prefix and len(path) > 3})
        data = _fill_placeholders(data, labels)
        run_name = _format(name, labels)
        run_extends = _format(extends, labels) if extends else None
        entries.append(_Entry(run_name, data, run_extends, abstract, combo_origins, where))
    return entries


def _matrix_axes(matrix: Any, name: str, origins: dict[Path, Location], where: Location,
                 problems: list[Problem]) -> dict[str, dict[str, dict[str, Any]]] | None:
    field = f"runs[{name}].matrix"
    if not isinstance(matrix, dict) or not matrix:
        problems.append(Problem(origins.get(("matrix",), where), field, "a matrix maps axis names to {label: patch} mappings"))
        return None
    axes: dict[str, dict[str, dict[str, Any]]] = {}
    ok = True
    for axis, labels in matrix.items():
        loc = origins.get(("matrix", axis), where)
        if not axis.isidentifier():
            problems.append(Problem(loc, f"{field}.{axis}", "axis names must be identifiers"))
            ok = False
        elif not isinstance(labels, dict) or not labels:
            problems.append(Problem(loc, f"{field}.{axis}", "each axis maps labels to patches (mappings)"))
            ok = False
        else:
            for label, patch in labels.items():
                if not _LABEL_RE.match(str(label)) or not isinstance(patch, dict):
                    problems.append(Problem(origins.get(("matrix", axis, label), loc), f"{field}.{axis}.{label}",
                                            "a label is a name ([A-Za-z0-9._-]) and its value a patch mapping"))
                    ok = False
            axes[axis] = {str(label): patch for label, patch in labels.items()}
    return axes if ok else None


def _format(template: str, labels: Mapping[str, str]) -> str:
    """Replace `{axis}` by its label; other braces are left alone."""
    names = {field for _, field, _, _ in string.Formatter().parse(template) if field}
    if not names <= set(labels):
        out = template
        for axis, label in labels.items():
            out = out.replace("{" + axis + "}", label)
        return out
    return template.format(**labels)


def _fill_placeholders(data: dict[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    out = dict(data)
    for path in _PLACEHOLDER_FIELDS[2:]:
        parent = out
        for key in path[:-1]:
            if not isinstance(parent.get(key), dict):
                break
            parent[key] = dict(parent[key])
            parent = parent[key]
        else:
            if isinstance(parent.get(path[-1]), str):
                parent[path[-1]] = _format(parent[path[-1]], labels)
    if isinstance(out.get("tags"), list):
        out["tags"] = [_format(tag, labels) if isinstance(tag, str) else tag for tag in out["tags"]]
    return out


def _did_you_mean(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
