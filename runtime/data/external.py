"""Sources that are not built in: fsspec text files and locally prepared TFDS datasets.

`runix lock` pins such a source by content (compiler.resolve_inputs: size +
sha256 of every file, their combined digest); this module reads exactly those
files back as documents, after checking each one against the lock, and
tokenizes them into a token shard like a built-in corpus's
(runtime.data.shards.write_shard), so the mixture treats every source alike.

fsspec paths (one file, a folder, a glob, `file://`, `gs://`, ...): the files
are the lock entry's file list (names relative to the fixed part of the path,
the rule of compiler.resolve_inputs.resolve_path), read in name order:
  *.jsonl        one document per line: a JSON object whose `text` field is a
                 string (blank lines are skipped; anything else is an error
                 naming file and line).
  anything else  the whole file is one document, decoded as UTF-8 (.txt, .md,
                 .py, .html, ...; a file that is not UTF-8 is an error naming it).
Empty documents are left out.

`tfds://name[/config][:version]/split`: the builder folder
`$TFDS_DATA_DIR/name[/config]/version` (default ~/tensorflow_datasets, as for
`runix lock`) at the locked version; each example's `text` feature (bytes or
str) is one document, in the split's order.

The shard's key is shard_key(sha256_json({reader format, locked digest,
split}), tokenizer digest): content-addressed by what the lock pinned. Every
call checks the files against the lock, also when the shard already exists,
so a run never starts on inputs that drifted from its hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from runtime.data.digests import sha256_json
from runtime.data.shards import ENCODE_BATCH_DOCUMENTS, SHARDS_DIR, TokenShard, _open_if_complete, shard_key, write_shard

READER_FORMAT = 1  # bump when the way files become documents changes
JSONL_SUFFIXES = (".jsonl",)
TEXT_FIELD = "text"
_CHUNK = 1 << 20


class SourceIntegrityError(RuntimeError):
    """An external source's file is missing, differs from the lock, or cannot be read as documents."""


# --------------------------------------------------------------------------- fsspec files


def file_paths(uri: str, locked: Mapping[str, Any]) -> tuple[Any, list[tuple[str, str, str]]]:
    """(filesystem, [(name in the lock, path on the filesystem, locked sha256)]) in name order."""
    import fsspec  # noqa: PLC0415

    from compiler.resolve_inputs import _fixed_base, _has_magic, expand_braces  # noqa: PLC0415 (jax-free)

    fs, path = fsspec.core.url_to_fs(uri)
    base = _fixed_base(path)
    if len(expand_braces(path)) == 1 and not _has_magic(path) and fs.isfile(path):
        base = path.rsplit("/", 1)[0] if "/" in path else ""
    files = locked.get("files") or {}
    out = []
    for rel in sorted(files):
        full = f"{base.rstrip('/')}/{rel}" if base and not rel.startswith("/") else rel
        out.append((rel, full, files[rel]["sha256"]))
    return fs, out


def verify_files(source: str, uri: str, locked: Mapping[str, Any]) -> None:
    """Hash every locked file of an fsspec source; a missing or changed file raises naming it."""
    fs, entries = file_paths(uri, locked)
    if not entries:
        raise SourceIntegrityError(f"source {source} ({uri}): the lock lists no files")
    for rel, path, expected in entries:
        _check_sha256(source, uri, rel, expected, _sha256_of(fs, path, source, uri, rel))


def file_documents(source: str, uri: str, locked: Mapping[str, Any]) -> Iterator[str]:
    """The documents of an fsspec source, file by file; each file's bytes are checked against the lock."""
    fs, entries = file_paths(uri, locked)
    for rel, path, expected in entries:
        data = _read_bytes(fs, path, source, uri, rel)
        _check_sha256(source, uri, rel, expected, hashlib.sha256(data).hexdigest())
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SourceIntegrityError(f"source {source} ({uri}): {rel} is not UTF-8 text ({e})") from None
        if rel.lower().endswith(JSONL_SUFFIXES):
            yield from _jsonl_documents(source, uri, rel, text)
        elif text:
            yield text


def _jsonl_documents(source: str, uri: str, rel: str, text: str) -> Iterator[str]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise SourceIntegrityError(f"source {source} ({uri}): {rel} line {number} is not JSON ({e})") from None
        value = record.get(TEXT_FIELD) if isinstance(record, dict) else None
        if not isinstance(value, str):
            raise SourceIntegrityError(
                f"source {source} ({uri}): {rel} line {number} has no string field {TEXT_FIELD!r}")
        if value:
            yield value


def _sha256_of(fs, path: str, source: str, uri: str, rel: str) -> str:
    digest = hashlib.sha256()
    try:
        with fs.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except (OSError, FileNotFoundError) as e:
        raise SourceIntegrityError(f"source {source} ({uri}): cannot read locked file {rel} ({e})") from None
    return digest.hexdigest()


def _read_bytes(fs, path: str, source: str, uri: str, rel: str) -> bytes:
    try:
        with fs.open(path, "rb") as f:
            return f.read()
    except (OSError, FileNotFoundError) as e:
        raise SourceIntegrityError(f"source {source} ({uri}): cannot read locked file {rel} ({e})") from None


def _check_sha256(source: str, uri: str, rel: str, expected: str, actual: str) -> None:
    if actual != expected:
        raise SourceIntegrityError(
            f"source {source} ({uri}): file {rel} has sha256 {actual}, but the run's lock says {expected}; "
            "it changed since `runix lock` (relock, or restore the locked file)")


# --------------------------------------------------------------------------- tfds://


def tfds_data_dir() -> Path:
    """Where TFDS datasets are prepared: $TFDS_DATA_DIR or ~/tensorflow_datasets (what `runix lock` reads)."""
    return Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets")


def tfds_builder_dir(locked: Mapping[str, Any], data_dir: str | os.PathLike[str] | None = None) -> Path:
    folder = Path(data_dir) if data_dir is not None else tfds_data_dir()
    folder = folder / locked["name"]
    if locked.get("config"):
        folder = folder / locked["config"]
    return folder / locked["version"]


def verify_tfds(source: str, uri: str, locked: Mapping[str, Any], data_dir=None) -> Path:
    """Hash every locked file of a TFDS split; returns the builder folder."""
    import fsspec  # noqa: PLC0415

    builder_dir = tfds_builder_dir(locked, data_dir)
    fs = fsspec.filesystem("file")
    files = locked.get("files") or {}
    if not files:
        raise SourceIntegrityError(f"source {source} ({uri}): the lock lists no files")
    for rel in sorted(files):
        path = str(builder_dir / rel)
        _check_sha256(source, uri, rel, files[rel]["sha256"], _sha256_of(fs, path, source, uri, rel))
    return builder_dir


def tfds_documents(source: str, uri: str, locked: Mapping[str, Any], data_dir=None) -> Iterator[str]:
    """The `text` feature of every example of the locked split, as str."""
    import tensorflow_datasets as tfds  # noqa: PLC0415 (heavy)

    builder_dir = verify_tfds(source, uri, locked, data_dir)
    data = tfds.builder_from_directory(str(builder_dir)).as_data_source(split=locked["split"])
    for index in range(len(data)):
        example = data[index]
        value = example.get(TEXT_FIELD) if isinstance(example, Mapping) else None
        if value is None:
            raise SourceIntegrityError(f"source {source} ({uri}): example {index} has no {TEXT_FIELD!r} feature")
        if isinstance(value, np.ndarray):
            value = value.item()
        text = bytes(value).decode("utf-8") if isinstance(value, (bytes, bytearray, np.bytes_)) else str(value)
        if text:
            yield text


# --------------------------------------------------------------------------- shards


def source_digest(locked: Mapping[str, Any]) -> str:
    """What the shard of an external source is addressed by (with the tokenizer's digest)."""
    return sha256_json({"reader": READER_FORMAT, "type": locked.get("type"), "digest": locked["digest"],
                        "split": locked.get("split")})


def build_external_shard(source: str, uri: str, locked: Mapping[str, Any], tokenizer_artifact,
                         root_dir: str | os.PathLike[str], *, tfds_dir=None) -> TokenShard:
    """Check the source against its lock entry (`locked`), then tokenize it once into a shard; reuse after."""
    kind = locked.get("type")
    if kind == "files":
        verify_files(source, uri, locked)
        documents = lambda: file_documents(source, uri, locked)  # noqa: E731
    elif kind == "tfds":
        verify_tfds(source, uri, locked, tfds_dir)
        documents = lambda: tfds_documents(source, uri, locked, tfds_dir)  # noqa: E731
    else:
        raise SourceIntegrityError(f"source {source} ({uri}): the runtime cannot read a locked source of type {kind!r}")
    corpus_digest = source_digest(locked)
    destination = Path(root_dir) / SHARDS_DIR / shard_key(corpus_digest, tokenizer_artifact.digest)
    existing = _open_if_complete(destination)
    if existing is not None:
        return existing
    tokenizer = tokenizer_artifact.load()
    tokenizer.encode_special_tokens = True  # "<|endoftext|>" inside a document is just text

    def encoded() -> Iterator[np.ndarray]:
        batch: list[str] = []
        for text in documents():
            batch.append(text)
            if len(batch) == ENCODE_BATCH_DOCUMENTS:
                yield from _encode(tokenizer, batch)
                batch = []
        yield from _encode(tokenizer, batch)

    return write_shard(
        encoded(),
        destination=destination,
        source=uri,
        eos_id=tokenizer_artifact.eos_id,
        vocab_size=tokenizer_artifact.vocab_size,
        provenance={"corpus_digest": corpus_digest, "locked_digest": locked["digest"],
                    "tokenizer_digest": tokenizer_artifact.digest},
    )


def _encode(tokenizer, texts: list[str]) -> Iterator[np.ndarray]:
    if texts:
        for encoding in tokenizer.encode_batch_fast(texts, add_special_tokens=False):
            yield np.asarray(encoding.ids, dtype=np.int64)
