"""Safe YAML/JSON loading that remembers the line of every value.

Why not `yaml.safe_load`: error messages must point at file:line for a field
path, and PyYAML's defaults have traps for a spec language (duplicate keys
silently overwrite, `no` is False, `3e-4` is a string, aliases can expand
exponentially). This loader walks PyYAML's safe node graph itself, with
YAML 1.2 booleans and floats, duplicate-key errors and an expansion budget.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import yaml

from compiler.problems import Location, Problem, SpecError

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
"""Budget of values after alias expansion; a billion-laughs file hits it fast."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (a spec needs under 10). Every later stage
(expand, validate, canonical JSON) walks values recursively; this bound keeps
them all far from Python's recursion limit."""
_COMPOSE_SAFE = 2_000
"""Nesting libyaml's composer survives (it recurses in C, and crashed this
machine's Python at 100,000 levels); deeper files are measured on the event stream first."""

Path = tuple[str | int, ...]


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it: ~10x faster


class _Yaml12SafeLoader(_BaseLoader):
    """SafeLoader with YAML 1.2 core-schema booleans and floats."""


_Yaml12SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"),
)
_Yaml12SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


@dataclasses.dataclass(frozen=True)
class Document:
    """A parsed file: plain data plus the line of every value by path."""

    file: str
    data: Any
    lines: dict[Path, int]

    def location(self, path: Path) -> Location:
        """Line of the deepest known prefix of `path` (a missing key → its parent)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line:
                return Location(self.file, line)
        return Location(self.file, 0)


def parse_document(text: str | bytes, file: str) -> Document:
    """Parse YAML (or JSON, a YAML subset) into plain data with line numbers."""
    problem = _precheck(text, file)
    if problem:
        raise SpecError([problem])
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    deep = _too_deep(text, file) if _nesting_bound(text) > _COMPOSE_SAFE else None
    if deep:
        raise SpecError([deep])
    loader = _Yaml12SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError([Problem(Location(file, 1), "", "the file is empty")])
        builder = _Builder(loader, file)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 0
        raise SpecError([Problem(Location(file, line), "", f"malformed YAML: {err.problem or err}")]) from None
    except yaml.YAMLError as err:
        raise SpecError([Problem(Location(file, 0), "", f"malformed YAML: {err}")]) from None
    finally:
        loader.dispose()
    builder.raise_problems()
    return Document(file, data, builder.lines)


def _precheck(text: str | bytes, file: str) -> Problem | None:
    size = len(text)
    if size > MAX_FILE_BYTES:
        return Problem(Location(file), "", f"file is {size} bytes; spec files are limited to {MAX_FILE_BYTES}")
    if isinstance(text, bytes):
        if b"\x00" in text:
            return Problem(Location(file), "", "binary file (contains NUL bytes), not a YAML/JSON spec")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            line = text[: err.start].count(b"\n") + 1
            return Problem(Location(file, line), "", "not UTF-8 text")
    if not text.strip():
        return Problem(Location(file, 1), "", "the file is empty")
    return None


def _nesting_bound(text: str) -> int:
    """An upper bound on the file's nesting, in C-speed counts.

    Every collection level starts with an indicator of its own: `[`, `{`,
    `- `, `key:` or `? `; so their count bounds the depth (loosely: colons in
    values count too). Only a file whose bound is large pays for `_too_deep`.
    """
    return sum(text.count(c) for c in "[{-:?")


def _too_deep(text: str, file: str) -> Problem | None:
    """The problem of a file nested deeper than MAX_DEPTH, found on the event stream (iterative, stops early)."""
    loader = _Yaml12SafeLoader(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    return _depth_problem(file, event.start_mark.line + 1)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return None  # malformed before it got too deep: the composer reports it, at that depth
    finally:
        loader.dispose()
    return None


def _depth_problem(file: str, line: int) -> Problem:
    return Problem(Location(file, line), "", f"nested deeper than {MAX_DEPTH} levels of mappings and lists "
                                             f"(the limit for spec files); flatten it")


class _Builder:
    """Turns a PyYAML node graph into dicts/lists/scalars, recording lines."""

    def __init__(self, loader: yaml.SafeLoader, file: str):
        self.loader = loader
        self.file = file
        self.lines: dict[Path, int] = {}
        self.problems: list[Problem] = []
        self.nodes = 0

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SpecError([Problem(
                Location(self.file, node.start_mark.line + 1), _dotted(path),
                f"document expands to more than {MAX_NODES} values (an alias bomb?)",
            )])
        self.lines[path] = node.start_mark.line + 1
        if len(path) >= MAX_DEPTH and isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            raise SpecError([_depth_problem(self.file, node.start_mark.line + 1)])
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    self._problem(key_node, path, f"keys must be strings, got {key!r}")
                    continue
                if key in result:
                    self._problem(key_node, path + (key,), f"duplicate key {key!r}")
                    continue
                result[key] = self.build(value_node, path + (key,))
                self.lines[path + (key,)] = key_node.start_mark.line + 1  # point at the key, not its value
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (index,)) for index, item in enumerate(node.value)]
        value = self.loader.construct_object(node, deep=True)
        if isinstance(value, (bytes, set)) or type(value).__module__ == "datetime":
            self._problem(node, path, f"unsupported YAML value of type {type(value).__name__}; quote it")
        return value

    def _problem(self, node: yaml.Node, path: Path, message: str) -> None:
        self.problems.append(Problem(Location(self.file, node.start_mark.line + 1), _dotted(path), message))

    def raise_problems(self) -> None:
        if self.problems:
            raise SpecError(self.problems)


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
