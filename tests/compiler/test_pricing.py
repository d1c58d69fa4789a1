"""Prices from built runs: timing records in a real store, read back, and what the plan makes of them."""

from __future__ import annotations

import statistics

import pytest

from compiler.calibration import read_measurements, step_key
from compiler.lock import load_locked_spec_set
from compiler.plan import plan
from compiler.pricing import checkpoint_saves
from compiler.store import Store
from runtime import timing
from tests.conftest import REPO


@pytest.fixture(scope="module")
def tiny():
    return load_locked_spec_set([REPO / "specs" / "tiny"])


def build_with_timing(store: Store, locked, name: str, step_seconds: float, *, compile_seconds=2.0, startup=3.0,
                      save=0.25) -> None:
    """Publish `name` as built with the timing record its trainer would have written (these seconds)."""
    run = locked.spec_set.by_name()[name]
    spec = run.spec
    work = store.begin_build(run, locked.lock.entries_for(run))
    clock = timing.SessionClock(started=0.0, first_step=0, loop_started=startup + compile_seconds,
                                compile_seconds=compile_seconds)
    clock.step_seconds = [5 * step_seconds] + [step_seconds] * (spec.total_steps - 1)
    clock.checkpoint_seconds = [save] * checkpoint_saves(spec)
    wall = startup + compile_seconds + sum(clock.step_seconds) + sum(clock.checkpoint_seconds)
    timing.write(work.path / timing.FILE, clock, wall, spec.total_steps, accelerator="cpu", chips=1,
                 tokens_per_step=spec.tokens_per_step, total_steps=spec.total_steps)
    store.finish_build(run.hash)


def test_the_step_key_ignores_length_mixture_and_schedule(tiny):
    runs = tiny.spec_set.by_name()
    keys = {step_key(r.spec) for r in runs.values()}
    assert len(keys) == 1  # every tiny run has the tiny shape on one cpu device
    wider = runs["tiny-code"].spec.model_copy(update={"batch": runs["tiny-code"].spec.batch.model_copy(update={"sequences": 16})})
    assert step_key(wider) not in keys


def test_same_shape_runs_are_priced_from_their_measured_step_time(tmp_path, tiny):
    store = Store(str(tmp_path / "store"))
    build_with_timing(store, tiny, "tiny-sweep-code0", 0.010)
    build_with_timing(store, tiny, "tiny-sweep-code100", 0.014)
    measurements = read_measurements(store)
    assert sorted(m.name for m in measurements) == ["tiny-sweep-code0", "tiny-sweep-code100"]
    m = measurements[0]
    assert m.steps == 30 and m.compile_seconds == 2.0 and m.startup_seconds == 3.0 and m.checkpoint_saves == 2
    result = {r.run.name: r for r in plan(tiny.spec_set, store.built_hashes(), measurements=measurements).runs}
    code = result["tiny-code"]  # 60 steps, another mixture: never built
    assert code.price.source == "measured" and code.price.built_runs == 2 and code.price.label == "measured×2"
    assert code.price.seconds_per_step == pytest.approx(0.012)  # the median of the two runs' medians
    assert code.chip_hours == pytest.approx(0.012 * 60 / 3600)
    o = code.price.overheads
    assert o["compile"].seconds == 2.0 and o["startup"].seconds == 3.0
    assert o["checkpoints"].seconds == pytest.approx(3 * 0.25)  # 60 steps, every 20
    # the slow first step beyond the median: (5 - 1) × step over the run's 30 steps, per step
    assert o["other"].seconds == pytest.approx(statistics.median([4 * 0.010 / 30, 4 * 0.014 / 30]) * 60)
    assert code.total_chip_hours == pytest.approx((0.012 * 60 + sum(x.seconds for x in o.values())) / 3600)
    # the MFU it is priced at is what that step time means
    assert code.mfu == pytest.approx(code.flops.total / (50e9 * code.chip_hours * 3600))


def test_other_shapes_refit_the_model_and_mfu_still_overrides(tmp_path, tiny):
    store = Store(str(tmp_path / "store"))
    build_with_timing(store, tiny, "tiny-code", 0.020)
    measurements = read_measurements(store)
    other = measurements[0].__class__(**{**measurements[0].__dict__, "key": "another shape"})
    bare = {r.run.name: r for r in plan(tiny.spec_set).runs}["tiny-cooldown"]
    result = {r.run.name: r for r in plan(tiny.spec_set, measurements=[other]).runs}["tiny-cooldown"]
    assert bare.price.source == "model" and result.price.source == "calibrated" and result.price.built_runs == 1
    # the refit lands on what the measured run took (same dims here, so the same per-token time)
    assert result.price.seconds_per_step == pytest.approx(0.020, rel=0.02)
    assert "refitted to 1 built run" in result.price.detail
    assert result.price.overheads["compile"].source.startswith("measured on 1 built run of other shapes")
    fixed = {r.run.name: r for r in plan(tiny.spec_set, mfu=0.5, measurements=measurements).runs}["tiny-cooldown"]
    assert fixed.price.source == "--mfu" and fixed.mfu == 0.5


def test_entries_without_a_timing_record_are_skipped(tmp_path, tiny):
    store = Store(str(tmp_path / "store"))
    run = tiny.spec_set.by_name()["tiny-code"]
    store.begin_build(run, tiny.lock.entries_for(run))
    store.finish_build(run.hash)
    assert store.built_hashes() == {run.hash} and read_measurements(store) == []
