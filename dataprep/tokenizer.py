"""Train the byte-level BPE tokenizer of the built-in corpora, as a pinned artifact.

A tokenizer changes every token a run sees, so it is an input of the run's
hash like the corpora: it is stored content-addressed as
`<root>/tokenizers/<sha256>-bpe-<vocab>/tokenizer.json`, where <sha256> is
the digest of tokenizer.json's bytes, and that digest is what the lock pins.

Training is deterministic: a fixed sample (documents taken in sha256(id)
order from each corpus, at most `SAMPLE_DOC_BYTES` of each, up to
`sample_bytes_per_corpus` per corpus, corpora in name order), fixed trainer
settings, and HF `tokenizers`, which gives identical JSON bytes for identical
input. An index keyed by the training inputs makes a second call with the
same corpora and vocabulary a lookup instead of a retrain.

Token ids: EOS_TOKEN "<|endoftext|>" is id 0 (EOS_ID), always; it is the only
special token. Ids 1..256 are the 256 byte symbols, the rest are merges.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from dataprep.atomic_dir import building
from dataprep.corpora import read_documents
from dataprep.digests import sha256_bytes, sha256_file, sha256_json
from dataprep.manifest import Manifest

EOS_TOKEN = "<|endoftext|>"
EOS_ID = 0
TOKENIZERS_DIR = "tokenizers"
TRAINING_FORMAT = 1  # bump when the sample or trainer settings change
SAMPLE_BYTES_PER_CORPUS = 1_500_000
SAMPLE_DOC_BYTES = 64 * 1024
MIN_FREQUENCY = 2


class TokenizerError(RuntimeError):
    """A tokenizer could not be trained, or its artifact does not verify."""


@dataclasses.dataclass(frozen=True)
class TokenizerArtifact:
    """A trained tokenizer on disk.

    digest: sha256 of tokenizer.json's bytes (what the lock pins).
    path: the tokenizer.json file.
    eos_id: id of the end-of-document token (always EOS_ID = 0).
    vocab_size: number of token ids; every id is < vocab_size.
    """

    digest: str
    path: Path
    eos_id: int
    vocab_size: int

    def load(self) -> tokenizers.Tokenizer:
        """The HF tokenizer, after checking the file still has its digest."""
        verify_tokenizer(self)
        return tokenizers.Tokenizer.from_file(str(self.path))


def train_tokenizer(
    corpora_manifests: Sequence[Manifest] | dict[str, Manifest],
    vocab_size: int,
    root_dir: str | os.PathLike[str],
    *,
    sample_bytes_per_corpus: int = SAMPLE_BYTES_PER_CORPUS,
) -> TokenizerArtifact:
    """Train (or find) the byte-level BPE tokenizer of `corpora_manifests`.

    corpora_manifests: prepared corpora (a list, or the dict that
      `prepare_default_corpora` returns); their order does not matter.
    vocab_size: total number of ids, special token and 256 byte symbols
      included; must be reachable by the sample (else TokenizerError).
    root_dir: data root; the artifact goes to `<root_dir>/tokenizers/`.
    """
    manifests = sorted(
        corpora_manifests.values() if isinstance(corpora_manifests, dict) else corpora_manifests,
        key=lambda m: m.name,
    )
    if vocab_size < 257 + 1:
        raise ValueError(f"vocab_size {vocab_size} is below 258 (EOS + 256 bytes + 1 merge)")
    root = Path(root_dir) / TOKENIZERS_DIR
    inputs_key = sha256_json(
        {
            "format": TRAINING_FORMAT,
            "corpora": [m.digest for m in manifests],
            "vocab_size": vocab_size,
            "sample_bytes_per_corpus": sample_bytes_per_corpus,
            "sample_doc_bytes": SAMPLE_DOC_BYTES,
            "min_frequency": MIN_FREQUENCY,
            "tokenizers": tokenizers.__version__,
        }
    )
    index_file = root / "index" / f"{inputs_key}.json"
    found = _from_index(root, index_file)
    if found is not None:
        return found

    tokenizer = _new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=MIN_FREQUENCY,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_sample(manifests, sample_bytes_per_corpus), trainer=trainer)
    if tokenizer.token_to_id(EOS_TOKEN) != EOS_ID:
        raise TokenizerError(f"{EOS_TOKEN} got id {tokenizer.token_to_id(EOS_TOKEN)}, not {EOS_ID}")
    if tokenizer.get_vocab_size() != vocab_size:
        raise TokenizerError(
            f"the tokenizer sample only supports {tokenizer.get_vocab_size()} ids, "
            f"not the requested vocab_size {vocab_size}: use a smaller vocabulary "
            "or a larger sample_bytes_per_corpus"
        )
    data = tokenizer.to_str(pretty=True).encode("utf-8")
    digest = sha256_bytes(data)
    destination = root / f"{digest}-bpe-{vocab_size}"
    if not _verifies(destination / "tokenizer.json", digest):
        with building(destination) as stage:
            (stage / "tokenizer.json").write_bytes(data)
            (stage / "artifact.json").write_text(
                json.dumps(
                    {
                        "digest": digest,
                        "eos_id": EOS_ID,
                        "eos_token": EOS_TOKEN,
                        "vocab_size": vocab_size,
                        "trained_on": {m.uri: m.digest for m in manifests},
                        "inputs_key": inputs_key,
                        "tokenizers_version": tokenizers.__version__,
                    },
                    indent=2,
                    sort_keys=True,
                )
                + "\n",
                encoding="utf-8",
            )
    index_file.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(index_file, json.dumps({"artifact": destination.name}) + "\n")
    return load_tokenizer_artifact(destination)


def load_tokenizer_artifact(artifact_dir: str | os.PathLike[str]) -> TokenizerArtifact:
    """The artifact in `<root>/tokenizers/<sha256>-bpe-<vocab>/`, verified."""
    artifact_dir = Path(artifact_dir)
    record = json.loads((artifact_dir / "artifact.json").read_text(encoding="utf-8"))
    artifact = TokenizerArtifact(
        digest=record["digest"],
        path=artifact_dir / "tokenizer.json",
        eos_id=record["eos_id"],
        vocab_size=record["vocab_size"],
    )
    verify_tokenizer(artifact)
    return artifact


def verify_tokenizer(artifact: TokenizerArtifact) -> None:
    """Raise TokenizerError unless tokenizer.json still hashes to `artifact.digest`."""
    if not _verifies(artifact.path, artifact.digest):
        raise TokenizerError(
            f"tokenizer {artifact.path} is missing or does not match its digest {artifact.digest}"
        )


def _new_tokenizer() -> tokenizers.Tokenizer:
    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _sample(manifests: Sequence[Manifest], bytes_per_corpus: int) -> Iterator[str]:
    """The training sample: see the module docstring."""
    for manifest in manifests:
        source = read_documents(manifest)
        ids = [bytes(source[i]["id"]) for i in range(len(source))]
        order = sorted(range(len(ids)), key=lambda i: (hashlib.sha256(ids[i]).digest(), ids[i]))
        taken = 0
        for i in order:
            if taken >= bytes_per_corpus:
                break
            text = bytes(source[i]["text"])[:SAMPLE_DOC_BYTES].decode("utf-8", errors="ignore")
            taken += len(text.encode("utf-8"))
            yield text


def _from_index(root: Path, index_file: Path) -> TokenizerArtifact | None:
    try:
        name = json.loads(index_file.read_text(encoding="utf-8"))["artifact"]
        return load_tokenizer_artifact(root / name)
    except (OSError, ValueError, KeyError, TokenizerError):
        return None


def _verifies(path: Path, digest: str) -> bool:
    return path.is_file() and sha256_file(path) == digest


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
