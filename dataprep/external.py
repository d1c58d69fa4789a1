"""Sources that are not built in: fsspec text files and locally prepared TFDS datasets.

`runix lock` pins such a source by content (compiler.resolve_inputs: size +
sha256 of every file, their combined digest); this module reads exactly those
files back as documents, after checking each one against the lock, and
tokenizes them into a token shard like a built-in corpus's
(dataprep.shards.write_shard), so the mixture treats every source alike.

fsspec paths (one file, a folder, a glob, `file://`, `gs://`, ...): the files
are the lock entry's file list (names relative to the fixed part of the path,
the rule of dataprep.files), read in name order, each by the reader of its
format (dataprep.readers: parquet, arrow, jsonl[.gz|.zst], array_record, or
plain text, chosen by the source's `format` option or the file's name) and
streamed: memory is bounded by a row group, a line or one document.

`tfds://name[/config][:version]/split`: the builder folder
`$TFDS_DATA_DIR/name[/config]/version` (default ~/tensorflow_datasets, as for
`runix lock`) at the locked version; each example's `text_field` feature
(bytes or str; default `text`) is one document, in the split's order.

The shard's key is shard_key(sha256_json({reader options, locked digest,
split}), tokenizer digest): content-addressed by what the lock pinned. A
finished shard (in the data root, or in the store: dataprep.store_shards) is
those locked bytes tokenized, so a run that finds one reads only it; building
one checks every file against the lock before and while reading, so a shard
is never made from inputs that drifted from the run's hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dataprep.digests import sha256_json
from dataprep import readers
from dataprep.files import locked_paths
from dataprep.readers import ReaderOptions
from dataprep.shards import (
    ENCODE_BATCH_DOCUMENTS, SHARDS_DIR, TokenShard, open_if_complete, open_or_build, shard_key, write_shard,
)

_CHUNK = 1 << 20


class SourceIntegrityError(RuntimeError):
    """An external source's file is missing, differs from the lock, or cannot be read as documents."""


# --------------------------------------------------------------------------- fsspec files


def file_paths(uri: str, locked: Mapping[str, Any]) -> tuple[Any, list[tuple[str, str, str]]]:
    """(filesystem, [(name in the lock, path on the filesystem, locked sha256)]) in name order."""
    import fsspec  # noqa: PLC0415

    fs, path = fsspec.core.url_to_fs(uri)
    files = locked.get("files") or {}
    return fs, [(rel, full, files[rel]["sha256"]) for rel, full in locked_paths(fs, path, files)]


def verify_files(source: str, uri: str, locked: Mapping[str, Any]) -> None:
    """Hash every locked file of an fsspec source; a missing or changed file raises naming it."""
    fs, entries = file_paths(uri, locked)
    if not entries:
        raise SourceIntegrityError(f"source {source} ({uri}): the lock lists no files")
    for rel, path, expected in entries:
        _check_sha256(source, uri, rel, expected, _sha256_of(fs, path, source, uri, rel))


def file_documents(source: str, uri: str, locked: Mapping[str, Any],
                   options: ReaderOptions = ReaderOptions()) -> Iterator[str]:
    """The documents of an fsspec source, file by file, streamed (read_locked_file for each)."""
    fs, entries = file_paths(uri, locked)
    for rel, path, expected in entries:
        yield from read_locked_file(source, uri, fs, rel, path, expected, options)


def read_locked_file(source: str, uri: str, fs, rel: str, path: str, expected: str,
                     options: ReaderOptions) -> Iterator[str]:
    """One locked file's documents, streamed; its sha256 is checked after reading (verify_files checks
    every file before), so a file that changed meanwhile is caught. Errors name the source and file."""
    try:
        yield from readers.documents(lambda: fs.open(path, "rb"), rel, options)
    except readers.ReadError as e:
        raise SourceIntegrityError(f"source {source} ({uri}): {e}") from None
    except FileNotFoundError as e:
        raise SourceIntegrityError(f"source {source} ({uri}): cannot read locked file {rel} ({e})") from None
    _check_sha256(source, uri, rel, expected, _sha256_of(fs, path, source, uri, rel))


def _sha256_of(fs, path: str, source: str, uri: str, rel: str) -> str:
    digest = hashlib.sha256()
    try:
        with fs.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except (OSError, FileNotFoundError) as e:
        raise SourceIntegrityError(f"source {source} ({uri}): cannot read locked file {rel} ({e})") from None
    return digest.hexdigest()


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


def tfds_documents(source: str, uri: str, locked: Mapping[str, Any], data_dir=None,
                   options: ReaderOptions = ReaderOptions()) -> Iterator[str]:
    """The `options.text_field` feature of every example of the locked split, as str, one example at a time."""
    import tensorflow_datasets as tfds  # noqa: PLC0415 (heavy)

    builder_dir = verify_tfds(source, uri, locked, data_dir)
    data = tfds.builder_from_directory(str(builder_dir)).as_data_source(split=locked["split"])
    for index in range(len(data)):
        example = data[index]
        field = options.text_field
        value = example.get(field) if isinstance(example, Mapping) else None
        if value is None:
            raise SourceIntegrityError(f"source {source} ({uri}): example {index} of split {locked['split']} "
                                       f"has no {field!r} feature")
        if isinstance(value, np.ndarray):
            value = value.item()
        text = bytes(value).decode("utf-8") if isinstance(value, (bytes, bytearray, np.bytes_)) else str(value)
        if text:
            yield text


# --------------------------------------------------------------------------- shards


def source_digest(locked: Mapping[str, Any], options: ReaderOptions = ReaderOptions()) -> str:
    """What the shard of an external source is addressed by (with the tokenizer's digest): content and reader options."""
    return sha256_json({**options.key(), "type": locked.get("type"), "digest": locked["digest"],
                        "split": locked.get("split")})


def build_external_shard(source: str, uri: str, locked: Mapping[str, Any], tokenizer_artifact,
                         root_dir: str | os.PathLike[str], *, tfds_dir=None,
                         options: ReaderOptions = ReaderOptions(), store=None) -> TokenShard:
    """The shard of a locked source under a tokenizer: opened when it exists, else tokenized once.

    A shard is addressed by what the lock pinned, so a finished one (in the
    data root, or published in `store`, a compiler.store.Store: see
    dataprep.store_shards) is exactly the locked bytes tokenized, and a run
    reads only it: the source is not read again. Only building reads the
    source, checking every file against the lock first and again as it reads.
    """
    destination = shard_destination(locked, options, tokenizer_artifact, root_dir)

    def build() -> TokenShard:  # opens the shard when the data root has it
        return _build_checked(source, uri, locked, tokenizer_artifact, destination, tfds_dir, options)

    if store is None:
        return build()
    from dataprep.store_shards import derive  # noqa: PLC0415

    return derive(store, destination, build)


def _build_checked(source: str, uri: str, locked: Mapping[str, Any], tokenizer_artifact, destination: Path,
                   tfds_dir, options: ReaderOptions) -> TokenShard:
    """Check the source against its lock entry (`locked`), then tokenize it once into `destination`; reuse after."""
    existing = open_if_complete(destination)
    if existing is not None:
        return existing
    kind = locked.get("type")
    if kind == "files":
        verify_files(source, uri, locked)
        documents = lambda: file_documents(source, uri, locked, options)  # noqa: E731
    elif kind == "tfds":
        verify_tfds(source, uri, locked, tfds_dir)
        documents = lambda: tfds_documents(source, uri, locked, tfds_dir, options)  # noqa: E731
    else:
        raise SourceIntegrityError(f"source {source} ({uri}): the runtime cannot read a locked source of type {kind!r}")
    return open_or_build(destination, lambda: _tokenize(uri, documents, tokenizer_artifact, destination,
                                                        shard_provenance(locked, options, tokenizer_artifact)))


def _tokenize(uri: str, documents, tokenizer_artifact, destination: Path, provenance) -> TokenShard:
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
        provenance=provenance,
    )


def shard_destination(locked: Mapping[str, Any], options: ReaderOptions, tokenizer_artifact,
                      root_dir: str | os.PathLike[str]) -> Path:
    """Where the shard of (source content, reader options, tokenizer) lives: its content address."""
    return Path(root_dir) / SHARDS_DIR / shard_key(source_digest(locked, options), tokenizer_artifact.digest)


def shard_provenance(locked: Mapping[str, Any], options: ReaderOptions, tokenizer_artifact) -> dict[str, Any]:
    return {"corpus_digest": source_digest(locked, options), "locked_digest": locked["digest"],
            "reader": options.key(), "tokenizer_digest": tokenizer_artifact.digest}


def _encode(tokenizer, texts: list[str]) -> Iterator[np.ndarray]:
    if texts:
        for encoding in tokenizer.encode_batch_fast(texts, add_special_tokens=False):
            yield np.asarray(encoding.ids, dtype=np.int64)
