"""Prepare corpora as TFDS datasets with manifests: once, atomically, verifiably.

`prepare_corpus("code", root)` collects the documents of `builtin://code`,
writes them as a TFDS array_record dataset under `<root>/corpora/code/`, and
returns its Manifest (sha256 of every file plus one digest). Preparing again
is a no-op when a complete build from the same inputs is on disk and still
matches its manifest; otherwise the corpus is rebuilt in a temporary folder
and renamed into place, so a reader never sees a half-written corpus.

The TFDS writing itself happens in a child process (see corpus_builder), the
only way to get reproducible array_record bytes without changing the
protobuf implementation of the caller's interpreter.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dataprep.atomic_dir import building
from dataprep.builtin_corpora import Document, builtin_names, get_builtin
from dataprep.digests import sha256_bytes, sha256_json
from dataprep.manifest import (
    CorpusIntegrityError,
    Manifest,
    load_manifest,
    make_manifest,
    verify_manifest,
    write_manifest,
)

CORPORA_DIR = "corpora"
TFDS_SUBDIR = "tfds"
BUILD_FORMAT = 1  # bump when the way documents become files changes

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# The child imports the builder instead of running it with `-m`, so that
# dataset_info.json records the builder's module name, not "__main__".
_BUILD_COMMAND = (
    "-c",
    "import sys; from dataprep.corpus_builder import main; sys.exit(main(sys.argv[1:]))",
)
_BUILD_ENV = {"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}


class CorpusBuildError(RuntimeError):
    """The TFDS build of a corpus failed; the message carries the child's stderr."""


def corpus_dir(root_dir: str | os.PathLike[str], name: str) -> Path:
    """Where the corpus `name` lives under a data root."""
    return Path(root_dir) / CORPORA_DIR / name


def prepare_corpus(name: str, root_dir: str | os.PathLike[str]) -> Manifest:
    """Prepare the built-in corpus `name` (`code` or `builtin://code`) under `root_dir`.

    Returns the manifest of a complete, verified build. Markup and
    code-adjacent need the Debian packages of scripts/install_corpora.sh
    unpacked under `<root_dir>/debian/` (a clear error says so otherwise).
    """
    corpus = get_builtin(name)
    collected = corpus.collect(Path(root_dir))
    return prepare_documents(
        name=corpus.name,
        uri=corpus.uri,
        documents=collected.documents,
        provenance={"role": corpus.role, "license": corpus.license, **collected.provenance},
        root_dir=root_dir,
    )


def prepare_default_corpora(root_dir: str | os.PathLike[str]) -> dict[str, Manifest]:
    """Prepare every built-in corpus; returns {uri: manifest} in a fixed order."""
    manifests = {}
    for name in builtin_names():
        manifest = prepare_corpus(name, root_dir)
        manifests[manifest.uri] = manifest
    return manifests


def prepare_documents(
    *,
    name: str,
    uri: str,
    documents: Sequence[Document],
    provenance: Mapping[str, Any],
    root_dir: str | os.PathLike[str],
) -> Manifest:
    """Prepare any list of documents as the corpus `name` (ids must be unique).

    This is what `prepare_corpus` does once it has collected a built-in
    corpus; tests and other sources can call it with their own documents.
    """
    if not _NAME.match(name):
        raise ValueError(f"corpus name {name!r} must match {_NAME.pattern}")
    ids = [document.id for document in documents]
    if len(set(ids)) != len(ids):
        raise ValueError(f"corpus {uri}: document ids are not unique")
    inputs_digest = documents_digest(documents)
    destination = corpus_dir(root_dir, name)
    existing = _complete_build(destination, inputs_digest)
    if existing is not None:
        return existing
    with building(destination) as stage:
        documents_path = stage / ".documents.jsonl"
        _write_documents(documents_path, documents)
        tfds_rel = _run_builder(name, uri, documents_path, stage / TFDS_SUBDIR)
        documents_path.unlink()
        manifest = make_manifest(
            name=name,
            uri=uri,
            path=stage,
            tfds_dir=f"{TFDS_SUBDIR}/{tfds_rel}",
            num_documents=len(documents),
            num_text_bytes=sum(len(d.text.encode("utf-8")) for d in documents),
            inputs_digest=inputs_digest,
            provenance=provenance,
        )
        write_manifest(manifest)
    final = load_manifest(destination)
    verify_manifest(final)
    return final


def documents_digest(documents: Iterable[Document]) -> str:
    """Digest of what a corpus is built from: build format, ids and text hashes."""
    return sha256_json(
        {
            "build_format": BUILD_FORMAT,
            "documents": [[d.id, sha256_bytes(d.text.encode("utf-8"))] for d in documents],
        }
    )


def read_documents(manifest: Manifest) -> Sequence[dict[str, bytes]]:
    """Random-access view of a prepared corpus: item i is {"id": bytes, "text": bytes}.

    Backed by TFDS's ArrayRecordDataSource, the same object
    `grain.MapDataset.source` accepts.
    """
    import tensorflow_datasets as tfds  # heavy; only needed when reading

    builder = tfds.builder_from_directory(str(manifest.dataset_dir))
    return builder.as_data_source(split="train")


def _complete_build(destination: Path, inputs_digest: str) -> Manifest | None:
    """The manifest of a finished build from the same inputs that still verifies."""
    try:
        manifest = load_manifest(destination)
    except (OSError, ValueError, TypeError, CorpusIntegrityError):
        return None
    if manifest.inputs_digest != inputs_digest:
        return None
    try:
        verify_manifest(manifest)
    except CorpusIntegrityError:
        return None
    return manifest


def _write_documents(path: Path, documents: Iterable[Document]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for document in documents:
            f.write(json.dumps({"id": document.id, "text": document.text}, ensure_ascii=False))
            f.write("\n")


def _run_builder(name: str, uri: str, documents_path: Path, data_dir: Path) -> str:
    """Build the TFDS dataset in a child process; return its folder relative to data_dir."""
    env = {**os.environ, **_BUILD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(_PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env.setdefault("TFDS_DISABLE_PROGRESS_BAR", "1")
    result = subprocess.run(
        [sys.executable, *_BUILD_COMMAND, name, str(documents_path.resolve()), str(data_dir.resolve())],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise CorpusBuildError(
            f"building the TFDS dataset for {uri} failed (exit {result.returncode}):\n"
            + result.stderr[-4000:]
        )
    return result.stdout.strip().splitlines()[-1]
