"""The user's own tokenizer: a Hugging Face `tokenizer.json` at any fsspec URI, pinned by sha256.

The phi-1, Arctic-SnowCoder and To-Code recipes name their tokenizers; a run
that trains with one must tokenize exactly the bytes its lock pinned. So the
file is read once through fsspec (`/path/tokenizer.json`, `file://`, `gs://`,
`s3://`, `memory://`, ...), its sha256 is the tokenizer's digest (what the
lock pins and the run hash covers), and a copy is kept content-addressed at
`<root>/tokenizers/<sha256>-user/tokenizer.json`, so the runtime, the lock
and evaluation load the same bytes from the same place, and a moved or
re-uploaded file with the same bytes is the same tokenizer.

End of document: documents are joined by the tokenizer's own end token, the
first of `EOS_CANDIDATES` that its vocabulary holds (GPT-2/codegen
"<|endoftext|>", Llama/T5 "</s>", Llama-3 "<|end_of_text|>", ...); a
tokenizer with none of them is an error that lists them. The choice is a
function of the file's bytes, so the digest covers it.

Vocabulary: every id the tokenizer can emit must have an embedding row, so
its vocabulary (added tokens included) must not exceed the model's
`vocab_size` (dataprep.vocab.check_vocab).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from dataprep.atomic_dir import building
from dataprep.tokenizer import TOKENIZERS_DIR, TokenizerArtifact, TokenizerError

EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<|eot_id|>", "<eos>", "<|eos|>", "[EOS]", "<|im_end|>")
MAX_TOKENIZER_BYTES = 256 << 20


@dataclasses.dataclass(frozen=True)
class TokenizerFacts:
    """What the lock records of a tokenizer.json (all functions of its bytes)."""

    digest: str
    size: int
    vocab_size: int
    eos_id: int
    eos_token: str

    def locked(self) -> dict[str, Any]:
        return {"type": "tokenizer.json", **dataclasses.asdict(self)}


def read_tokenizer_bytes(uri: str) -> bytes:
    """The bytes of the tokenizer.json at `uri` (TokenizerError naming it when unreadable)."""
    import fsspec  # noqa: PLC0415

    try:
        with fsspec.open(uri, "rb") as f:
            data = f.read(MAX_TOKENIZER_BYTES + 1)
    except (OSError, ValueError, ImportError) as e:
        raise TokenizerError(f"tokenizer {uri}: cannot read it ({type(e).__name__}: {e})") from None
    if len(data) > MAX_TOKENIZER_BYTES:
        raise TokenizerError(f"tokenizer {uri}: larger than {MAX_TOKENIZER_BYTES >> 20} MiB; not a tokenizer.json")
    return data


def tokenizer_facts(uri: str, data: bytes):
    """(TokenizerFacts, the loaded tokenizers.Tokenizer) of a tokenizer.json's bytes."""
    import tokenizers  # noqa: PLC0415

    try:
        text = data.decode("utf-8")
        json.loads(text)
        tokenizer = tokenizers.Tokenizer.from_str(text)
    except (UnicodeDecodeError, ValueError, Exception) as e:  # tokenizers raises its own Exception type
        raise TokenizerError(f"tokenizer {uri}: not a Hugging Face tokenizer.json ({type(e).__name__}: {e})") from None
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    eos = next((token for token in EOS_CANDIDATES if token in vocab), None)
    if eos is None:
        raise TokenizerError(f"tokenizer {uri}: has no end-of-document token; runix joins documents with the "
                             f"first of {', '.join(EOS_CANDIDATES)} in the vocabulary")
    facts = TokenizerFacts(digest=hashlib.sha256(data).hexdigest(), size=len(data),
                           vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
                           eos_id=int(vocab[eos]), eos_token=eos)
    return facts, tokenizer


def fetch_tokenizer(uri: str, root_dir: str | os.PathLike[str], expected_digest: str | None = None) -> TokenizerArtifact:
    """The tokenizer at `uri` as an artifact under `<root>/tokenizers/<sha256>-user/`, checked against the lock.

    With `expected_digest` (the lock's) a cached copy is used without
    reading `uri` at all, so a run reads only what its lock pinned even when
    the original has moved or changed; without one, `uri` is read.
    """
    root = Path(root_dir) / TOKENIZERS_DIR
    if expected_digest is not None:
        cached = _cached(root / f"{expected_digest}-user", expected_digest, uri)
        if cached is not None:
            return cached
    data = read_tokenizer_bytes(uri)
    facts, _ = tokenizer_facts(uri, data)
    if expected_digest is not None and facts.digest != expected_digest:
        raise TokenizerError(f"tokenizer {uri} has sha256 {facts.digest}, but the run's lock says {expected_digest}; "
                             "it changed since `runix lock` (relock, or restore the locked file)")
    destination = root / f"{facts.digest}-user"
    cached = _cached(destination, facts.digest, uri)
    if cached is not None:
        return cached
    with building(destination) as stage:
        (stage / "tokenizer.json").write_bytes(data)
        (stage / "artifact.json").write_text(json.dumps(facts.locked(),
                                                        indent=2, sort_keys=True) + "\n")
    return _artifact(destination, facts)


def _cached(folder: Path, digest: str, uri: str) -> TokenizerArtifact | None:
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        return None  # a damaged cache entry is rebuilt from the source
    facts, _ = tokenizer_facts(uri, data)
    return _artifact(folder, facts)


def _artifact(folder: Path, facts: TokenizerFacts) -> TokenizerArtifact:
    return TokenizerArtifact(digest=facts.digest, path=folder / "tokenizer.json", eos_id=facts.eos_id,
                             vocab_size=facts.vocab_size)
