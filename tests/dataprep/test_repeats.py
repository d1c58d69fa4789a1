"""The one max_repeats rule (dataprep.repeats) and the runtime applying it to a real shard."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataprep.repeats import num_windows, passes_needed, repeats_problem
from dataprep.shards import write_shard
from runtime.data.step_batches import DataPlanError, MixtureSource, make_batch_function
from runtime.data.windows import SourceWindows


def test_the_1024_token_case():
    assert num_windows(1024, 128) == 7
    assert passes_needed(1024, 1024, 128) == 2
    message = repeats_problem(1024, 1024, 128, 1, "tokens")
    assert "needs 2 repeats" in message and "max_repeats is 1" in message
    assert repeats_problem(1024, 1024, 128, 2, "tokens") is None
    assert repeats_problem(896, 1024, 128, 1, "tokens") is None  # 7 sequences: one pass


@given(st.integers(0, 10**6), st.integers(1, 10**6), st.sampled_from([1, 2, 8, 128, 4096]))
def test_passes_are_what_the_windows_give(sequences, tokens, length):
    """The rule agrees with the trainer's window arithmetic (runtime.data.windows) for every size."""
    needed = passes_needed(sequences * length, tokens, length)
    windows = SourceWindows("s", tokens, length, 0)
    assert needed == windows.epochs_needed(sequences)
    if windows.num_windows and sequences:
        assert (needed - 1) * windows.num_windows < sequences <= needed * windows.num_windows


def test_the_runtime_refuses_the_1024_token_source_with_the_same_words(tmp_path):
    shard = write_shard([np.arange(1, 1024)], destination=tmp_path / "s", source="file:///s.jsonl",
                        eos_id=0, vocab_size=2048, provenance={})
    assert shard.num_tokens == 1024
    with pytest.raises(DataPlanError, match=r"budget 1,024 tokens \(8 sequences of 128\) needs 2 repeats"):
        make_batch_function([MixtureSource("s", shard, 1024, 1)], 128, 8, 1, seed=0)
    make_batch_function([MixtureSource("s", shard, 1024, 2)], 128, 8, 1, seed=0)
