"""train_run in-process: resume equals uninterrupted, built runs are skipped, the init chain, refusals."""

from __future__ import annotations

import json

import pytest

from runtime import checkpoint as checkpoint_lib
from runtime import digest as digest_lib
from runtime.device_batches import SyntheticBatches
from runtime.errors import BadInput
from runtime.train import train_run
from tests.runtime.runs import hash_of, tiny_spec, write_run_dir


SHORT_SCHEDULE = {"phases": [{"kind": "warmup", "length": 1, "peak": 1e-3}, {"kind": "cosine", "floor": 1e-4}]}


def source(spec):
    return SyntheticBatches(spec.model.vocab_size, spec.batch.sequences, spec.batch.sequence_length, seed=0)


def train(spec, run_dir, parent=None, **kwargs):
    """Train `spec` into run_dir; parent = (parent_spec, parent_dir, parent_hash) for a child."""
    parent_hash = parent[2] if parent else None
    run_hash = write_run_dir(run_dir, spec, parent_hash)
    return train_run(spec, run_hash, run_dir, parent[1] if parent else None, source(spec), parent_hash=parent_hash,
                     **kwargs)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """An uninterrupted 12-step run (checkpoints every 4, keep 1): (spec, run_dir, hash, record)."""
    spec = tiny_spec("base", checkpoint={"every": 4, "keep": 1, "digest_every": 2})
    run_dir = tmp_path_factory.mktemp("base")
    record = train(spec, run_dir)
    return spec, run_dir, hash_of(spec), record


def test_uninterrupted_run_is_complete(base):
    spec, run_dir, run_hash, record = base
    assert record.complete and len(record.losses) == 12 and sorted(record.params_sha256) == [2, 4, 6, 8, 10, 12]
    assert digest_lib.read_digest(run_dir / "digest.json") == record
    losses = [digest_lib.loss_from_bits(b) for b in record.losses]
    assert losses[-1] < losses[0]  # it learns
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(12))
    assert set(lines[0]) == {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"}
    # Retention: the final checkpoint plus the newest `keep` (1) other.
    assert sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()) == [8, 12]
    sessions = json.loads((run_dir / "run.json").read_text())["sessions"]
    assert sessions[0]["mesh"]["axes"] == {"data": 1, "fsdp": 1, "tensor": 1}
    # What the build measured of its cost, for the dry run to price by (runtime.timing).
    timing = json.loads((run_dir / "timing.json").read_text())
    assert timing["steps"] == 12 and timing["steps_timed"] == 11 and timing["checkpoint_saves"] == 3
    assert 0 < timing["step_seconds_median"] < timing["wall_seconds"] and timing["compile_seconds"] > 0
    assert timing["chip_hours"] == pytest.approx(timing["wall_seconds"] / 3600)


def test_stop_then_resume_equals_uninterrupted(base, tmp_path):
    spec, _, _, uninterrupted = base
    partial = train(spec, tmp_path, stop_after_step=6)
    assert not partial.complete and len(partial.losses) == 6
    assert partial.losses == uninterrupted.losses[:6]
    # What a kill -9 in the middle of saving step 8 would leave: an unfinished temporary directory.
    unfinished = tmp_path / "checkpoints" / "8.orbax-checkpoint-tmp-1700000000"
    (unfinished / "state").mkdir(parents=True)
    (unfinished / "state" / "partial").write_bytes(b"\0" * 64)
    resumed = train(spec, tmp_path)
    assert not unfinished.exists()
    assert digest_lib.first_difference(resumed, uninterrupted) is None and resumed == uninterrupted
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(12))  # each step once
    sessions = json.loads((tmp_path / "timing.json").read_text())["sessions"]
    assert [(s["first_step"], s["last_step"]) for s in sessions] == [(0, 6), (6, 12)]  # resumed from checkpoint 6


def test_built_run_is_not_trained_again(base):
    spec, run_dir, run_hash, record = base
    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").iterdir()}
    again = train_run(spec, run_hash, run_dir, None, source(spec))
    assert again == record
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").iterdir()} == before


def test_checkpoint_of_another_run_is_refused(base, tmp_path):
    spec, run_dir, run_hash, _ = base
    other = tiny_spec("other", steps=8, init={"kind": "scratch", "seed": 1})
    # The same directory, with another run's hash: refused, nothing overwritten.
    spec_json = (run_dir / "spec.json").read_text()
    with pytest.raises(BadInput, match="describes run"):
        train_run(other, hash_of(other), run_dir, None, source(other))
    # A directory whose spec.json was swapped but whose checkpoints are the base run's.
    (tmp_path / "checkpoints").symlink_to(run_dir / "checkpoints")
    write_run_dir(tmp_path, other)
    with pytest.raises(BadInput, match="checkpoints of run"):
        train_run(other, hash_of(other), tmp_path, None, source(other))
    assert (run_dir / "spec.json").read_text() == spec_json
    assert not (tmp_path / "digest.json").exists()


@pytest.mark.parametrize("optimizer_state", ["reset", "carry"])
def test_child_starts_from_verified_parent(base, tmp_path, optimizer_state):
    parent_spec, parent_dir, parent_hash, parent_record = base
    child = tiny_spec("child", steps=4, init={"kind": "parent", "run": "base", "optimizer_state": optimizer_state},
                      schedule={"phases": [{"kind": "warmup", "length": 2, "peak": 1e-3}, {"kind": "cosine", "floor": 1e-4}]})
    record = train(child, tmp_path, parent=(parent_spec, parent_dir, parent_hash))
    assert record.complete
    # The child's first loss is near where the parent ended, far from a fresh model's: it started from the parent.
    first, parent_first, parent_last = (digest_lib.loss_from_bits(b) for b in
                                        (record.losses[0], parent_record.losses[0], parent_record.losses[-1]))
    assert abs(first - parent_last) < abs(first - parent_first)
    store = checkpoint_lib.Checkpoints(tmp_path / "checkpoints", keep=1, total_steps=4, read_only=True)
    meta = store.read_meta(4)
    store.close()
    assert meta["run_hash"] == hash_of(child, parent_hash)


def test_carry_and_reset_differ(base, tmp_path):
    parent_spec, parent_dir, parent_hash, _ = base
    records = {}
    for mode in ("reset", "carry"):
        child = tiny_spec("child", steps=2, init={"kind": "parent", "run": "base", "optimizer_state": mode},
                          schedule=SHORT_SCHEDULE)
        records[mode] = train(child, tmp_path / mode, parent=(parent_spec, parent_dir, parent_hash))
    assert records["reset"].losses[0] == records["carry"].losses[0]  # same weights, same first batch
    assert records["reset"].final_params_sha256 != records["carry"].final_params_sha256  # other moments


def test_tampered_or_unbuilt_parent_is_refused(base, tmp_path):
    parent_spec, parent_dir, parent_hash, _ = base
    child = tiny_spec("child", steps=2, init={"kind": "parent", "run": "base"}, schedule=SHORT_SCHEDULE)
    # A parent whose final parameters do not match its digest record.
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name in ("spec.json", "checkpoints"):
        (tampered / name).symlink_to(parent_dir / name)
    record = json.loads((parent_dir / "digest.json").read_text())
    record["final_params_sha256"] = "0" * 64
    (tampered / "digest.json").write_text(json.dumps(record))
    with pytest.raises(BadInput, match="sha256"):
        train(child, tmp_path / "child1", parent=(parent_spec, tampered, parent_hash))
    # The wrong parent directory.
    with pytest.raises(BadInput, match="but this run's parent is"):
        train(child, tmp_path / "child2", parent=(parent_spec, parent_dir, "1" * 64))
    # A parent that stopped before its last step.
    unbuilt = tmp_path / "unbuilt"
    train(parent_spec, unbuilt, stop_after_step=2)
    with pytest.raises(BadInput, match="not built"):
        train(child, tmp_path / "child3", parent=(parent_spec, unbuilt, parent_hash))
    for name in ("child1", "child2", "child3"):
        assert not (tmp_path / name / "checkpoints").exists() and not (tmp_path / name / "digest.json").exists()
