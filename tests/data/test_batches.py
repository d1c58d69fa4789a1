"""The batch function of a run: exact budgets, purity, resume, workers, processes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from runtime.data.step_batches import BatchFunction, DataPlanError, MixtureSource, make_batch_function
from runtime.data.pipeline import make_batch_dataset
from dataprep.shards import write_shard

L, B, S = 32, 8, 24  # sequence length, global batch, steps


@pytest.fixture
def shards(make_shard):
    return {
        "code": make_shard("code", 4000, seed=1),
        "text": make_shard("text", 2500, seed=2),
        "markup": make_shard("markup", 1200, seed=3),
    }


def sources(shards, code=96, text=64, markup=32, repeats=4):
    """Budgets in sequences (x L tokens); they sum to S * B = 192."""
    return [
        MixtureSource("code", shards["code"], code * L, repeats),
        MixtureSource("text", shards["text"], text * L, repeats),
        MixtureSource("markup", shards["markup"], markup * L, repeats),
    ]


def digest(batch: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(batch):
        h.update(key.encode())
        h.update(np.ascontiguousarray(batch[key]).tobytes())
    return h.hexdigest()


def test_exact_tokens_per_source_over_the_run(shards):
    fn = make_batch_function(sources(shards), L, B, S, seed=3)
    tokens = np.zeros(3, dtype=np.int64)
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for step in range(S):
        batch = fn.batch_at(step)
        assert batch["inputs"].shape == (B, L) and batch["inputs"].dtype == np.int32
        assert np.array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
        counts = np.bincount(batch["source_ids"], minlength=3)
        tokens += counts * L
        assert all(abs(c - n / S) < 1 for c, n in zip(counts, (96, 64, 32)))
        source_ids, sequence_ids = fn.slots_at(step)
        for s, k in zip(source_ids, sequence_ids):
            seen[int(s)].append(int(k))
    assert tokens.tolist() == [96 * L, 64 * L, 32 * L]
    # Every sequence index of every source is used exactly once.
    assert [sorted(v) for v in seen.values()] == [list(range(96)), list(range(64)), list(range(32))]


def test_windows_cover_each_epoch_once(shards):
    fn = make_batch_function(sources(shards, code=96 + 64 + 32, text=0, markup=0), L, B, S, seed=5)
    windows = fn.windows[0]
    per_epoch = windows.num_windows
    assert windows.epochs_needed(192) == 2  # 4000 tokens -> 124 windows of 32 + 1
    chosen = windows.windows(np.arange(192))
    assert sorted(chosen[:per_epoch]) == list(range(per_epoch))
    assert len(set(chosen[per_epoch:].tolist())) == 192 - per_epoch
    # And the tokens of a slot are that window of the stream.
    source_ids, sequence_ids = fn.slots_at(7)
    batch = fn.batch_at(7)
    start = windows.token_starts(sequence_ids[:1])[0]
    stream = np.asarray(shards["code"].tokens, dtype=np.int32)
    assert np.array_equal(batch["inputs"][0], stream[start : start + L])
    assert np.array_equal(batch["targets"][0], stream[start + 1 : start + L + 1])


def test_batches_depend_on_seed_only(shards):
    a = make_batch_function(sources(shards), L, B, S, seed=1)
    b = make_batch_function(sources(shards), L, B, S, seed=1)
    c = make_batch_function(sources(shards), L, B, S, seed=2)
    assert [digest(a.batch_at(s)) for s in range(S)] == [digest(b.batch_at(s)) for s in range(S)]
    assert digest(a.batch_at(0)) != digest(c.batch_at(0))


def test_two_processes_partition_the_global_batch(shards):
    whole = make_batch_function(sources(shards), L, B, S, seed=4)
    halves = [
        make_batch_function(sources(shards), L, B, S, seed=4, process_index=p, process_count=2)
        for p in range(2)
    ]
    for step in (0, 5, S - 1):
        full = whole.batch_at(step)
        parts = [h.batch_at(step) for h in halves]
        assert parts[0]["inputs"].shape == (B // 2, L)
        for key in full:
            assert np.array_equal(np.concatenate([p[key] for p in parts]), full[key])


def test_identical_batches_in_a_separate_process(shards):
    fn = make_batch_function(sources(shards), L, B, S, seed=9, document_masking=True)
    here = [digest(fn.batch_at(s)) for s in range(S)]
    paths = {name: str(shard.path) for name, shard in shards.items()}
    script = textwrap.dedent(
        f"""
        import hashlib, json, sys
        import numpy as np
        from runtime.data.step_batches import MixtureSource, make_batch_function
        paths = json.loads(sys.argv[1])
        budgets = {{"code": 96, "text": 64, "markup": 32}}
        fn = make_batch_function(
            [MixtureSource(n, paths[n], budgets[n] * {L}, 4) for n in ("code", "text", "markup")],
            {L}, {B}, {S}, seed=9, document_masking=True)
        out = []
        for step in range({S}):
            batch = fn.batch_at(step)
            h = hashlib.sha256()
            for key in sorted(batch):
                h.update(key.encode()); h.update(np.ascontiguousarray(batch[key]).tobytes())
            out.append(h.hexdigest())
        print(json.dumps(out))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(paths)], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == here


def test_resume_at_step_n_equals_the_uninterrupted_stream(shards):
    fn = make_batch_function(sources(shards), L, B, S, seed=2)
    full = [digest(batch) for batch in make_batch_dataset(fn, num_threads=2)]
    assert full == [digest(fn.batch_at(s)) for s in range(S)]
    resumed = [digest(batch) for batch in make_batch_dataset(fn, start_step=10)]
    assert resumed == full[10:]
    # Iterator state: checkpoint after 7 batches, restore into a fresh iterator.
    iterator = iter(make_batch_dataset(fn))
    head = [digest(next(iterator)) for _ in range(7)]
    state = iterator.get_state()
    restored = iter(make_batch_dataset(fn))
    restored.set_state(state)
    assert head + [digest(batch) for batch in restored] == full


def test_one_and_two_grain_workers_give_the_same_stream(shards):
    fn = make_batch_function(sources(shards), L, B, S, seed=6, document_masking=True)
    expected = [digest(fn.batch_at(s)) for s in range(S)]
    for workers in (1, 2):
        iterator = iter(make_batch_dataset(fn, num_workers=workers))
        try:
            assert [digest(batch) for batch in iterator] == expected, workers
        finally:
            iterator.close()


def test_budget_needing_too_many_repeats_names_the_count(shards):
    # markup: 1200 tokens -> 37 windows; 160 sequences need 5 passes.
    with pytest.raises(DataPlanError) as error:
        make_batch_function(sources(shards, code=32, markup=96, repeats=2), L, B, S, seed=0)
    message = str(error.value)
    assert "source 'markup'" in message and "needs 3 repeats" in message
    assert "max_repeats is 2" in message and "synthetic://markup" in message


def test_plan_errors_are_collected_and_clear(shards):
    bad = [
        MixtureSource("code", shards["code"], 96 * L + 5, 4),
        MixtureSource("text", shards["text"], 10 * L, 4),
    ]
    with pytest.raises(DataPlanError, match="not a multiple of the sequence length 32"):
        make_batch_function(bad, L, B, S, seed=0)
    short = [MixtureSource("code", shards["code"], 10 * L, 4)]
    with pytest.raises(DataPlanError, match="budgets add up to 320 tokens"):
        make_batch_function(short, L, B, S, seed=0)
    with pytest.raises(DataPlanError, match="not divisible by process_count 3"):
        make_batch_function(sources(shards), L, B, S, seed=0, process_count=3)


def test_document_masking_segments_and_positions(tmp_path):
    # Documents of lengths 3, 5, 2, ... joined with EOS (0): rows show where EOS starts a segment.
    documents = [np.arange(1, n + 1) for n in (3, 5, 2, 6, 4, 7, 3, 5)] * 4
    shard = write_shard(
        documents, destination=tmp_path / "docs", source="synthetic://docs", eos_id=0,
        vocab_size=100, provenance={},
    )
    fn = BatchFunction([("docs", shard, 4 * 8, 2)], 8, 2, 2, seed=0, document_masking=True)
    plain = BatchFunction([("docs", shard, 4 * 8, 2)], 8, 2, 2, seed=0)
    for step in range(2):
        batch = fn.batch_at(step)
        for row, segments, positions in zip(batch["inputs"], batch["segment_ids"], batch["positions"]):
            expected_segment, expected_position = [], []
            segment, position = 1, 0
            for t, token in enumerate(row):
                if t > 0 and token == 0:
                    segment, position = segment + 1, 0
                expected_segment.append(segment)
                expected_position.append(position)
                position += 1
            assert segments.tolist() == expected_segment
            assert positions.tolist() == expected_position
        other = plain.batch_at(step)
        assert np.array_equal(other["inputs"], batch["inputs"])
        assert (other["segment_ids"] == 1).all()
        assert (other["positions"] == np.arange(8)).all()
        assert batch["loss_mask"].dtype == np.float32 and (batch["loss_mask"] == 1).all()


def test_batch_function_pickles_without_copying_tokens(shards):
    import pickle

    fn = make_batch_function(sources(shards), L, B, S, seed=1)
    data = pickle.dumps(fn)
    assert len(data) < 20_000
    assert digest(pickle.loads(data).batch_at(3)) == digest(fn.batch_at(3))


@pytest.mark.parametrize("count", [2, 4])
def test_grain_per_host_slices_hold_each_process_block_of_every_step(shards, count):
    """grain's [p::P] slice + batch gives process p exactly batch_at's rows for it, step by step."""
    global_fn = make_batch_function(sources(shards), L, B, S, seed=5, document_masking=True)
    for index in range(count):
        fn = make_batch_function(sources(shards), L, B, S, seed=5, document_masking=True,
                                 process_index=index, process_count=count)
        streamed = list(make_batch_dataset(fn, start_step=3, stop_step=S - 2))
        assert len(streamed) == S - 5
        for step, batch in zip(range(3, S - 2), streamed):
            assert digest(batch) == digest(fn.batch_at(step))
            rows = slice(index * B // count, (index + 1) * B // count)
            assert np.array_equal(batch["inputs"], global_fn.batch_at(step)["inputs"][rows])
