"""Which files an fsspec source names, and under what relative names: one rule for lock and runtime.

A source path is one file, a folder (every file under it, recursively), a
glob (`*`, `?`, `[...]`), or `{a,b}` alternatives of any of these, on any
fsspec filesystem. The lock records each file under its name relative to the
path's fixed part (the folder above the first wildcard or brace; the file's
own folder for a single file), and the runtime maps those names back to
paths with the same rule, so a source is read exactly as it was locked.
"""

from __future__ import annotations

import re


def expand_braces(pattern: str) -> list[str]:
    """`data/{html,css}/x` → [`data/html/x`, `data/css/x`] (nested and repeated braces too)."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    out = []
    for choice in match.group(1).split(","):
        out.extend(expand_braces(pattern[:match.start()] + choice + pattern[match.end():]))
    return list(dict.fromkeys(out))


def fixed_base(path: str) -> str:
    """The folder above the first wildcard or brace ('' for none), or the path itself without any."""
    head = re.split(r"[*?\[{]", path, maxsplit=1)[0]
    if head == path:
        return path.rstrip("/")
    return head.rsplit("/", 1)[0] if "/" in head else ""


def has_magic(path: str) -> bool:
    return any(char in path for char in "*?[")


def list_files(fs, path: str) -> tuple[str, list[str]]:
    """(base, sorted file paths) that `path` names on `fs`; FileNotFoundError when it names none.

    `base` is what the relative names in a lock are relative to (`relative_name`).
    """
    patterns = expand_braces(path)
    base = fixed_base(path)
    found: set[str] = set()
    for pattern in patterns:
        if has_magic(pattern):
            found.update(p for p in fs.glob(pattern) if fs.isfile(p))
        elif fs.isdir(pattern):
            found.update(fs.find(pattern))
        elif fs.isfile(pattern):
            found.add(pattern)
            if len(patterns) == 1:
                base = pattern.rsplit("/", 1)[0] if "/" in pattern else ""
        elif len(patterns) == 1:
            raise FileNotFoundError("not found")
    if not found:
        raise FileNotFoundError("matches no files")
    return base, sorted(found)


def relative_name(base: str, file: str) -> str:
    return file[len(base):].lstrip("/") if base and file.startswith(base) else file


def locked_paths(fs, path: str, names) -> list[tuple[str, str]]:
    """[(relative name, path on fs)] for the locked `names` of source `path`, in name order."""
    base = fixed_base(path)
    if len(expand_braces(path)) == 1 and not has_magic(path) and fs.isfile(path):
        base = path.rsplit("/", 1)[0] if "/" in path else ""
    return [(rel, f"{base.rstrip('/')}/{rel}" if base and not rel.startswith("/") else rel) for rel in sorted(names)]
