"""Fixtures for the data tests: tiny synthetic shards built in temporary folders."""

from __future__ import annotations

import numpy as np
import pytest

from dataprep.shards import write_shard


def synthetic_documents(num_tokens: int, seed: int, vocab_size: int = 1000) -> list[np.ndarray]:
    """Random documents (ids 1..vocab-1, never the EOS 0) totalling >= num_tokens with EOS."""
    rng = np.random.default_rng(seed)
    documents, total = [], 0
    while total < num_tokens:
        document = rng.integers(1, vocab_size, size=int(rng.integers(3, 40)))
        documents.append(document)
        total += document.size + 1
    return documents


@pytest.fixture
def make_shard(tmp_path):
    """make_shard(name, num_tokens, seed=0) -> an opened TokenShard under tmp_path."""

    def make(name: str, num_tokens: int, seed: int = 0, vocab_size: int = 1000):
        return write_shard(
            synthetic_documents(num_tokens, seed, vocab_size),
            destination=tmp_path / "shards" / name,
            source=f"synthetic://{name}",
            eos_id=0,
            vocab_size=vocab_size,
            provenance={},
        )

    return make
