"""The report's data: rows read from a real store, families, replay records, metrics edge cases."""

from __future__ import annotations

import json
import pathlib

import fsspec
import pytest

from compiler.report.data import (
    NOT_BUILT, chain_positions, families, read_metrics, read_replays, replay_logs, replay_status,
)
from compiler.specset import load_spec_set
from tests.conftest import REPO
from tests.report.conftest import BUILDING, BUILT, REPLAYS, TOKENS_PER_S, loss_at


def test_rows_hold_the_stores_values(tiny_report_data, tiny_project):
    rows = {r.name: r for r in tiny_report_data.rows}
    assert [r.name for r in tiny_report_data.rows] == [r.name for r in tiny_project.runs.values()]
    for name in BUILT:
        row, run = rows[name], tiny_project.runs[name]
        assert row.status == "built" and row.run.hash == run.hash
        steps = run.spec.total_steps
        assert row.metrics.final_loss == loss_at(name, steps - 1)
        assert row.metrics.final_loss_source == "digest"
        assert row.metrics.tokens_trained == run.spec.total_tokens
        assert len(row.metrics.curve) == steps and row.metrics.curve[0] == (run.spec.tokens_per_step, loss_at(name, 0))
        assert row.metrics.wall_seconds == pytest.approx(run.spec.total_tokens / TOKENS_PER_S)
        assert row.chip_hours_measured == pytest.approx(run.spec.total_tokens / TOKENS_PER_S * run.spec.mesh.chips / 3600)
        assert row.chip_hours_estimated > 0
        assert row.metrics.problems == ()
    assert rows[BUILDING].status == f"{NOT_BUILT} (building)" and rows[BUILDING].metrics is None
    assert str(rows["tiny-code"].replay) == "identical steps 0:60"
    assert str(rows["tiny-sweep-code0"].replay) == "diverged steps 10:30: step 17: loss differs (2 replays)"
    assert str(rows["tiny-code-text"].replay) == "not replayed"


def test_a_chained_run_sits_after_its_ancestors_tokens():
    runs = load_spec_set([REPO / "specs" / "tiny"]).runs
    depth, offset = chain_positions(runs)
    assert (depth["tiny-code"], depth["tiny-code-text"], depth["tiny-cooldown"]) == (0, 1, 2)
    assert offset["tiny-code-text"] == 60 * 1024
    assert offset["tiny-cooldown"] == (60 + 40) * 1024
    assert offset["tiny-sweep-code50"] == 0


def test_families_of_the_tiny_set():
    found = {f.slug: f for f in families(load_spec_set([REPO / "specs" / "tiny"]).runs)}
    assert list(found) == ["tags-sweep-tiny", "tags-tiny", "chain-tiny-code"]
    assert found["chain-tiny-code"].members == ("tiny-code", "tiny-code-text", "tiny-cooldown")
    assert set(found["tags-sweep-tiny"].members) == {"tiny-sweep-code0", "tiny-sweep-code50", "tiny-sweep-code100"}
    assert len(found["tags-tiny"].members) == 6


def test_families_of_the_to_code_suite_are_its_comparisons():
    runs = load_spec_set([REPO / "specs" / "to_code"]).runs
    found = {f.slug: f for f in families(runs)}
    sweep = found["tags-470m-sweep-to-code"]
    assert [m.rsplit("-", 1)[1] for m in sweep.members] == ["code0", "code100", "code25", "code50", "code75", "code90"]
    recipes = found["tags-470m-recipe-to-code"].members
    assert set(recipes) == {"470m-text-only", "470m-balanced-only", "470m-balanced-text", "470m-code-text"}
    chain = found["chain-470m-code-markup"].members
    assert chain[0] == "470m-code-markup" and "470m-code-text-cool-text" in chain
    assert all(len(f.members) >= 2 for f in found.values())
    assert {m for f in found.values() for m in f.members} == {r.name for r in runs}
    assert "other" not in found
    assert len(found) < len(runs)  # one page, not one figure per run


def test_runs_in_no_family_are_drawn_together(write_spec):
    path = write_spec("""\
runs:
  - name: a
    model: {preset: tiny}
    batch: {sequences: 8, sequence_length: 128}
    steps: 10
    tags: [x]
    data: {sources: {code: {uri: "builtin://code", role: code, share: 1.0}}}
    schedule: {phases: [{kind: constant, value: 1e-3}]}
  - {name: b, extends: a, tags: [y]}
""")
    (other,) = families(load_spec_set([path]).runs)
    assert other.kind == "other" and other.members == ("a", "b")


def _fs_with(tmp_path, **files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return fsspec.filesystem("file"), str(tmp_path)


def test_metrics_reader_tolerates_cut_lines_repeated_steps_and_a_missing_digest(tmp_path):
    lines = [
        {"step": 0, "loss": 5.0, "tokens": 100, "tokens_per_s": 50.0},
        {"step": 1, "loss": 9.0, "tokens": 200, "tokens_per_s": 50.0},
        {"step": 1, "loss": 4.0, "tokens": 200, "tokens_per_s": 100.0},  # redone after a resume: the last counts
        {"step": 2, "loss": 3.0},  # no tokens: (step + 1) × tokens per step
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"step": 3, "lo'
    fs, entry = _fs_with(tmp_path, **{"metrics.jsonl": text})
    metrics = read_metrics(fs, entry, tokens_per_step=100)
    assert metrics.curve == ((100, 5.0), (200, 4.0), (300, 3.0))
    assert metrics.tokens_trained == 300
    assert metrics.final_loss == 3.0 and metrics.final_loss_source == "metrics"
    assert metrics.wall_seconds == pytest.approx(100 / 50 + 100 / 100)
    assert metrics.problems == ("1 unreadable line in metrics.jsonl", "no digest.json")


def test_without_metrics_the_digest_gives_the_curve(tmp_path):
    digest = {"format": "runix-digest/1", "run_hash": "0" * 64, "name": "x", "total_steps": 2, "complete": True,
              "losses": ["40400000", "3f800000"], "params_sha256": {}, "final_params_sha256": "ab"}
    fs, entry = _fs_with(tmp_path, **{"digest.json": json.dumps(digest)})
    metrics = read_metrics(fs, entry, tokens_per_step=10)
    assert metrics.curve == ((10, 3.0), (20, 1.0))
    assert metrics.final_loss == 1.0 and metrics.final_params_sha256 == "ab" and metrics.wall_seconds is None


def test_replay_records(tmp_path):
    fs, entry = _fs_with(tmp_path)
    logs = replay_logs(str(tmp_path / "store"), "ab" * 32, "run", entry)
    assert read_replays(fs, logs) == [] and str(replay_status([])) == "not replayed"
    records = REPLAYS["tiny-sweep-code0"]
    (tmp_path / "replays.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n")
    assert read_replays(fs, logs) == records
    store_log = tmp_path / "store" / ".replays" / f"{'ab' * 32}-run.jsonl"
    store_log.parent.mkdir(parents=True)
    store_log.write_text(json.dumps(REPLAYS["tiny-code"][0]) + "\n")
    assert read_replays(fs, logs) == REPLAYS["tiny-code"]  # runix replay's log comes first
    assert str(replay_status(REPLAYS["tiny-code"])) == "identical steps 0:60"
    assert str(replay_status([{"status": "identical"}])) == "identical"
    assert str(replay_status([{"status": "diverged"}])) == "diverged: digest differs"


def test_a_remote_store_reads_the_same(tiny_project, tmp_path):
    """fsspec's memory filesystem stands in for gs:// and friends, as in the store's own tests."""
    import uuid

    from compiler.lock import load_locked_spec_set
    from compiler.report import collect
    from compiler.store import Store

    locked = load_locked_spec_set([tiny_project.root / "specs" / "tiny"])
    store = Store(f"memory://report-{uuid.uuid4().hex}/store", staging=tmp_path / "staging")
    run = locked.spec_set.by_name()["tiny-code"]
    build = store.begin_build(run, locked.lock.entries_for(run))
    local = pathlib.Path(tiny_project.store.entry(run.hash))
    for name in ("metrics.jsonl", "digest.json"):
        (build.path / name).write_bytes((local / name).read_bytes())
    build.finish()
    row = collect(locked.spec_set, store, spec_set_name="tiny").row("tiny-code")
    assert row.built and row.metrics.final_loss == loss_at("tiny-code", 59) and row.metrics.problems == ()


def test_the_report_prices_as_compile_does_and_a_built_run_without_its_own_record(tmp_path):
    """Timing records in the store calibrate the report's estimates exactly as they do `runix compile`'s."""
    from compiler.calibration import read_measurements
    from compiler.lock import load_locked_spec_set
    from compiler.plan import plan
    from compiler.report.data import collect
    from compiler.store import Store
    from tests.compiler.test_pricing import build_with_timing

    locked = load_locked_spec_set([REPO / "specs" / "tiny"])
    store = Store(str(tmp_path / "store"))
    build_with_timing(store, locked, "tiny-sweep-code0", 0.010)
    build_with_timing(store, locked, "tiny-sweep-code100", 0.030)
    rows = {r.name: r for r in collect(locked.spec_set, store, spec_set_name="tiny").rows}
    dry_run = {r.run.name: r for r in plan(locked.spec_set, store.built_hashes(),
                                           measurements=read_measurements(store)).runs}
    # an unbuilt run: the dry run's price, measured on both built runs of its shape
    assert rows["tiny-code"].price_source == dry_run["tiny-code"].price.label == "measured×2"
    assert rows["tiny-code"].chip_hours_estimated == pytest.approx(dry_run["tiny-code"].total_chip_hours)
    assert rows["tiny-code"].mfu == pytest.approx(dry_run["tiny-code"].mfu)
    # a built run: priced from the other record only (0.030 s a step), never from its own (0.010 s)
    assert rows["tiny-sweep-code0"].price_source == "measured×1"
    other = [m for m in read_measurements(store) if m.name == "tiny-sweep-code100"]
    alone = {r.run.name: r for r in plan(locked.spec_set, measurements=other).runs}["tiny-sweep-code0"]
    assert rows["tiny-sweep-code0"].chip_hours_estimated == pytest.approx(alone.total_chip_hours)
    assert rows["tiny-sweep-code0"].chip_hours_estimated > dry_run["tiny-sweep-code0"].total_chip_hours
    assert rows["tiny-sweep-code0"].to_json()["price_source"] == "measured×1"
