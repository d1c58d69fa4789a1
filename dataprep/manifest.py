"""The manifest of a prepared corpus: what it is made of, down to every byte.

TFDS's dataset_info.json records versions and shard lengths but no
checksums, so runix keeps its own record beside each prepared corpus: the
sha256 of every file, one digest over all of them (the value the lock pins),
a digest of the inputs it was built from (to know when a rebuild is due),
counts, and where the documents came from.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dataprep.digests import digest_of_files, sha256_file, tree_files

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1


class CorpusIntegrityError(RuntimeError):
    """A prepared corpus on disk does not match its manifest."""


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A prepared corpus.

    name: corpus name (`code`); uri: how a spec names it (`builtin://code`).
    digest: sha256 over `files`, the value a lockfile pins.
    files: {path relative to `path`: sha256} of every file except the manifest.
    tfds_dir: the TFDS dataset folder (relative to `path`) for
      `tfds.builder_from_directory`.
    inputs_digest: sha256 of the documents it was built from (ids and texts)
      and of the build format; equal inputs digest means nothing to rebuild.
    path: the corpus folder on this machine (not part of the record).
    """

    name: str
    uri: str
    digest: str
    files: Mapping[str, str]
    tfds_dir: str
    num_documents: int
    num_text_bytes: int
    inputs_digest: str
    provenance: Mapping[str, Any]
    path: Path

    @property
    def dataset_dir(self) -> Path:
        """Absolute path of the TFDS dataset folder."""
        return self.path / self.tfds_dir

    def to_json(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        del record["path"]
        record["format"] = MANIFEST_FORMAT
        record["files"] = dict(sorted(self.files.items()))
        return record


def make_manifest(
    *,
    name: str,
    uri: str,
    path: Path,
    tfds_dir: str,
    num_documents: int,
    num_text_bytes: int,
    inputs_digest: str,
    provenance: Mapping[str, Any],
) -> Manifest:
    """Hash every file under `path` (a finished build) and return its manifest."""
    files = {
        rel: sha256_file(path / rel) for rel in tree_files(path) if rel != MANIFEST_FILE
    }
    return Manifest(
        name=name,
        uri=uri,
        digest=digest_of_files(files),
        files=files,
        tfds_dir=tfds_dir,
        num_documents=num_documents,
        num_text_bytes=num_text_bytes,
        inputs_digest=inputs_digest,
        provenance=dict(provenance),
        path=path,
    )


def write_manifest(manifest: Manifest) -> Path:
    """Write `<path>/manifest.json` (sorted keys, trailing newline)."""
    target = manifest.path / MANIFEST_FILE
    target.write_text(
        json.dumps(manifest.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    return target


def load_manifest(corpus_dir: str | Path) -> Manifest:
    """Read `<corpus_dir>/manifest.json` (no verification; see `verify_manifest`)."""
    corpus_dir = Path(corpus_dir)
    record = json.loads((corpus_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    if record.get("format") != MANIFEST_FORMAT:
        raise CorpusIntegrityError(
            f"{corpus_dir / MANIFEST_FILE}: manifest format {record.get('format')!r}, "
            f"expected {MANIFEST_FORMAT}"
        )
    record.pop("format")
    return Manifest(**record, path=corpus_dir)


def verify_manifest(manifest: Manifest) -> None:
    """Re-hash every file; raise CorpusIntegrityError naming each mismatch."""
    problems = []
    if digest_of_files(manifest.files) != manifest.digest:
        problems.append("the manifest's digest does not match its file list")
    on_disk = {rel for rel in tree_files(manifest.path) if rel != MANIFEST_FILE}
    for rel in sorted(on_disk - set(manifest.files)):
        problems.append(f"unexpected file {rel}")
    for rel, expected in sorted(manifest.files.items()):
        if rel not in on_disk:
            problems.append(f"missing file {rel}")
        elif sha256_file(manifest.path / rel) != expected:
            problems.append(f"sha256 mismatch for {rel}")
    if problems:
        raise CorpusIntegrityError(
            f"corpus {manifest.uri} at {manifest.path} does not match its manifest: "
            + "; ".join(problems)
        )
