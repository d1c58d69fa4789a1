"""Token shards: each corpus tokenized once into a flat, memory-mapped token stream.

Tokenizing is the slow step (~0.5M tokens/s per core), and a training run
reads every source many times, so each (corpus, tokenizer) pair is encoded
once into `<root>/shards/<key>/`, where <key> = sha256 of the corpus
manifest digest, the tokenizer digest and the shard format:

  tokens.npy   1-D uint16 (vocab <= 65536) or uint32: every document's tokens
               followed by EOS, documents in corpus order.
  offsets.npy  1-D int64, num_documents + 1 entries: document i is
               tokens[offsets[i]:offsets[i+1]], its last token the EOS.
  shard.json   what it was made from, counts, and the sha256 of both arrays
               (their combined digest is the shard's `digest`).
  build.json   how long tokenizing took (informational, not verified).

Opening a shard checks file sizes (a truncated file is an error that names
the source) and, by default, the sha256 of both arrays.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dataprep.atomic_dir import building, exclusive
from dataprep.digests import digest_of_files, sha256_file, sha256_json

SHARDS_DIR = "shards"
TOKENIZATIONS_LOG = "tokenizations.jsonl"
SHARD_FORMAT = 1
ENCODE_BATCH_DOCUMENTS = 256
_DATA_FILES = ("tokens.npy", "offsets.npy")

log = logging.getLogger(__name__)


class ShardIntegrityError(RuntimeError):
    """A token shard on disk is missing, truncated or does not match its digest."""


class TokenShard:
    """An opened shard: `tokens` (memory-mapped) and `offsets`, plus its record.

    Pickles as its path and record only, and re-maps the files when
    unpickled (data-loader worker processes do this), so the tokens are
    never copied through a pipe.
    """

    def __init__(self, path: Path, record: Mapping[str, Any], tokens: np.ndarray, offsets: np.ndarray):
        self.path = path
        self.record = dict(record)
        self.tokens = tokens
        self.offsets = offsets

    source = property(lambda self: self.record["source"], doc="URI or name of the corpus")
    digest = property(lambda self: self.record["digest"], doc="sha256 over tokens + offsets")
    num_tokens = property(lambda self: int(self.record["num_tokens"]))
    num_documents = property(lambda self: int(self.record["num_documents"]))
    eos_id = property(lambda self: int(self.record["eos_id"]))
    vocab_size = property(lambda self: int(self.record["vocab_size"]))

    def __repr__(self) -> str:
        return (
            f"TokenShard({self.source!r}, {self.num_tokens} tokens, "
            f"{self.num_documents} documents, digest={self.digest[:12]})"
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path), "record": self.record}

    def __setstate__(self, state: dict[str, Any]) -> None:
        reopened = open_shard(state["path"], verify=False)
        if reopened.digest != state["record"]["digest"]:
            raise ShardIntegrityError(
                f"token shard of {state['record']['source']} at {state['path']} changed on disk"
            )
        self.__dict__.update(reopened.__dict__)


def shard_key(corpus_digest: str, tokenizer_digest: str) -> str:
    """The content address of the shard of one corpus under one tokenizer."""
    return sha256_json(
        {"format": SHARD_FORMAT, "corpus": corpus_digest, "tokenizer": tokenizer_digest}
    )


def build_shard(manifest, tokenizer_artifact, root_dir: str | os.PathLike[str]) -> TokenShard:
    """Tokenize a prepared corpus (dataprep.manifest.Manifest) once; reuse after.

    tokenizer_artifact: a dataprep.tokenizer.TokenizerArtifact.
    Returns the opened, verified shard; tokens/s is logged and kept in build.json.
    """
    key = shard_key(manifest.digest, tokenizer_artifact.digest)
    destination = Path(root_dir) / SHARDS_DIR / key
    return open_or_build(destination, lambda: _tokenize_corpus(manifest, tokenizer_artifact, destination))


def open_or_build(destination: Path, build: Callable[[], TokenShard]) -> TokenShard:
    """The complete shard at `destination`, built by `build` once across processes.

    Checked before and again under the exclusive lock: a concurrent builder of
    the same shard finishes first, and then its shard is found, not rebuilt.
    """
    existing = open_if_complete(destination)
    if existing is not None:
        return existing
    with exclusive(destination):
        existing = open_if_complete(destination)
        return existing if existing is not None else build()


def _tokenize_corpus(manifest, tokenizer_artifact, destination: Path) -> TokenShard:
    from dataprep.corpora import read_documents  # tfds is only needed to build

    tokenizer = tokenizer_artifact.load()
    tokenizer.encode_special_tokens = True  # "<|endoftext|>" inside a document is just text
    source = read_documents(manifest)

    def encoded_documents() -> Iterator[np.ndarray]:
        for start in range(0, len(source), ENCODE_BATCH_DOCUMENTS):
            stop = min(start + ENCODE_BATCH_DOCUMENTS, len(source))
            texts = [bytes(source[i]["text"]).decode("utf-8") for i in range(start, stop)]
            for encoding in tokenizer.encode_batch_fast(texts, add_special_tokens=False):
                yield np.asarray(encoding.ids, dtype=np.int64)

    return write_shard(
        encoded_documents(),
        destination=destination,
        source=manifest.uri,
        eos_id=tokenizer_artifact.eos_id,
        vocab_size=tokenizer_artifact.vocab_size,
        provenance={"corpus_digest": manifest.digest, "tokenizer_digest": tokenizer_artifact.digest},
    )


def write_shard(
    documents: Iterable[Sequence[int] | np.ndarray],
    *,
    destination: str | os.PathLike[str],
    source: str,
    eos_id: int,
    vocab_size: int,
    provenance: Mapping[str, Any],
) -> TokenShard:
    """Write token documents (without EOS; it is appended) as a shard at `destination`.

    The building block of `build_shard`; tests use it to make synthetic
    shards without a tokenizer. Streams to disk: memory stays flat.
    """
    destination = Path(destination)
    dtype = np.dtype("<u2" if vocab_size <= 1 << 16 else "<u4")
    started = time.perf_counter()
    with building(destination) as stage:
        offsets = [0]
        with open(stage / "tokens.raw", "wb") as raw:
            for document in documents:
                ids = np.asarray(document, dtype=np.int64)
                if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
                    raise ValueError(f"{source}: token id outside [0, {vocab_size})")
                raw.write(np.append(ids, eos_id).astype(dtype).tobytes())
                offsets.append(offsets[-1] + ids.size + 1)
        num_tokens = offsets[-1]
        _raw_to_npy(stage / "tokens.raw", stage / "tokens.npy", dtype, num_tokens)
        np.save(stage / "offsets.npy", np.asarray(offsets, dtype=np.int64), allow_pickle=False)
        seconds = time.perf_counter() - started
        files = {name: sha256_file(stage / name) for name in _DATA_FILES}
        record = {
            "format": SHARD_FORMAT,
            "source": source,
            "digest": digest_of_files(files),
            "files": files,
            "sizes": {name: (stage / name).stat().st_size for name in _DATA_FILES},
            "dtype": dtype.name,
            "eos_id": int(eos_id),
            "vocab_size": int(vocab_size),
            "num_tokens": int(num_tokens),
            "num_documents": len(offsets) - 1,
            **dict(provenance),
        }
        (stage / "shard.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        rate = num_tokens / seconds if seconds > 0 else float("inf")
        (stage / "build.json").write_text(
            json.dumps({"seconds": round(seconds, 3), "tokens_per_second": round(rate)}) + "\n"
        )
        log.info("tokenized %s: %d tokens in %.2f s (%.0f tokens/s)", source, num_tokens, seconds, rate)
    _record_tokenization(destination, source, num_tokens, seconds)
    return open_shard(destination)


def _record_tokenization(destination: Path, source: str, num_tokens: int, seconds: float) -> None:
    """Append one line to `<shards>/tokenizations.jsonl`: every tokenization this data root ever ran.

    A shard is built once and then shared, so this log is how a user (and a
    test) sees that N runs, processes or hosts over one source tokenized it once.
    One O_APPEND write per line, so concurrent builders never interleave.
    """
    line = json.dumps({"shard": destination.name, "source": source, "tokens": int(num_tokens),
                       "seconds": round(seconds, 3), "pid": os.getpid()}, sort_keys=True) + "\n"
    fd = os.open(destination.parent / TOKENIZATIONS_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def tokenizations(root_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every tokenization recorded under a data root (oldest first)."""
    path = Path(root_dir) / SHARDS_DIR / TOKENIZATIONS_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def open_shard(path: str | os.PathLike[str], *, verify: bool = True) -> TokenShard:
    """Open a shard folder; sizes are always checked, sha256 when `verify`.

    Raises ShardIntegrityError naming the source for a missing, truncated or
    corrupted shard.
    """
    path = Path(path)
    try:
        record = json.loads((path / "shard.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ShardIntegrityError(f"token shard at {path} has no readable shard.json: {error}") from None
    source = record.get("source", "?")
    for name in _DATA_FILES:
        file = path / name
        expected = record["sizes"][name]
        actual = file.stat().st_size if file.is_file() else None
        if actual != expected:
            state = "is missing" if actual is None else f"has {actual} bytes, expected {expected}"
            raise ShardIntegrityError(
                f"token shard of {source} at {path} is truncated or damaged: {name} {state}"
            )
        if verify and sha256_file(file) != record["files"][name]:
            raise ShardIntegrityError(
                f"token shard of {source} at {path} is corrupted: sha256 of {name} does not match"
            )
    # A plain ndarray view of the memory map: same pages, without np.memmap's
    # per-slice bookkeeping (the view keeps the map alive).
    tokens = np.load(path / "tokens.npy", mmap_mode="r", allow_pickle=False).view(np.ndarray)
    offsets = np.load(path / "offsets.npy", allow_pickle=False)
    if tokens.shape != (record["num_tokens"],) or offsets.shape != (record["num_documents"] + 1,):
        raise ShardIntegrityError(f"token shard of {source} at {path}: array shapes do not match shard.json")
    return TokenShard(path, record, tokens, offsets)


def open_if_complete(path: Path) -> TokenShard | None:
    """The verified shard at `path`, or None when it is missing, unfinished or damaged (then it is rebuilt)."""
    if not (path / "shard.json").is_file():
        return None
    try:
        return open_shard(path)
    except (ShardIntegrityError, OSError, KeyError, ValueError):
        return None


def _raw_to_npy(raw_path: Path, npy_path: Path, dtype: np.dtype, length: int) -> None:
    """Prefix a raw little-endian token file with an .npy header (streaming copy)."""
    with open(npy_path, "wb") as out, open(raw_path, "rb") as raw:
        np.lib.format.write_array_header_1_0(
            out, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)}
        )
        shutil.copyfileobj(raw, out, 1 << 20)
    raw_path.unlink()
