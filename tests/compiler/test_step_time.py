"""The size-aware step-time model: its data file, its fit, and what it says about size, chips and remat."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import step_time
from compiler.hardware import PROFILES, profile


@pytest.fixture(scope="module")
def data() -> step_time.ModelData:
    return step_time.load()


def shape(d: int, layers: int, vocab: int = 256_000, seq: int = 8192, remat: str = "none") -> step_time.StepShape:
    return step_time.StepShape(d, layers, vocab, seq, layers * (4 * d * d + 3 * d * (8 * d // 3)), d, remat)


def test_every_point_has_a_source_and_a_known_chip(data):
    assert len(data.points) >= 20
    for p in data.points:
        assert p.source and p.chip in PROFILES and p.tokens_per_s_per_chip > 0, p.id
    assert len({p.id for p in data.points}) == len(data.points)


def test_every_accelerator_has_a_family_with_constants(data):
    for name in PROFILES:
        constants, how = data.constants(name)
        assert all(t > 0 for t in constants.theta[:2]) and how
        assert constants.matmul_efficiency <= 1 and constants.attention_efficiency <= 1


def test_the_stored_constants_are_the_fit_of_the_stored_points(data):
    """The data file cannot drift from its points: `benchmarks/bench_cost_model.py --write` rewrites both."""
    raw = json.loads(step_time.DATA_FILE.read_text())
    for family, spec in raw["families"].items():
        points = data.family_points(family)
        if not points:
            assert "borrow" in spec
            continue
        assert step_time.fit_points(points, bool(spec.get("tie_attention"))).to_json() == spec["constants"], family


def test_the_fit_reproduces_the_published_points(data):
    for family in ("tpu", "gpu"):
        constants = step_time.Constants.from_json(data.families[family]["constants"])
        errors = [abs(constants.seconds_per_token(p.shape, profile(p.chip)) / p.seconds_per_token - 1)
                  for p in data.family_points(family)]
        assert sum(errors) / len(errors) < 0.15, family
        loo = step_time.leave_one_out(data.family_points(family), bool(data.families[family].get("tie_attention")))
        assert sum(abs(e) for _, _, e in loo) / len(loo) < 0.2, family


def test_utilization_grows_with_model_size_and_falls_on_a_chip_with_less_bandwidth_per_flop(data):
    constants, _ = data.constants("tpu-v5e")

    def mfu(s, chip):
        hw = profile(chip)
        return s.model_flops_per_token / (hw.peak_flops * constants.seconds_per_token(s, hw))

    small, large = shape(1024, 16), shape(2560, 27)
    assert mfu(small, "tpu-v5e") < mfu(large, "tpu-v5e") < 1
    # v5e has ~240 FLOP per byte of bandwidth, v5p ~166: the same model uses v5e's peak less well
    assert mfu(small, "tpu-v5e") < mfu(small, "tpu-v5p")


def test_remat_pays_for_its_recomputation(data):
    constants, _ = data.constants("gpu-h100")
    hw = profile("gpu-h100")
    times = [constants.seconds_per_token(shape(2048, 24, remat=r), hw) for r in ("none", "dots", "full")]
    assert times[0] < times[1] < times[2]


@settings(max_examples=40, deadline=None)
@given(theta=st.tuples(st.floats(1.0, 5.0), st.floats(1.0, 10.0), st.floats(0.0, 500.0), st.floats(0.0, 50.0)))
def test_the_fit_recovers_constants_from_exact_times(theta):
    shapes = [shape(d, layers, vocab, seq) for d, layers, vocab, seq in
              [(512, 6, 128_000, 4096), (1024, 24, 50_000, 2048), (2048, 16, 32_000, 512), (768, 12, 256_000, 16384),
               (4096, 32, 64_000, 1024), (256, 4, 4096, 128)]]
    hw = profile("tpu-v5p")
    rows = [s.terms(hw.peak_flops, hw.hbm_bytes_per_s) for s in shapes]
    targets = [step_time._dot(r, theta) for r in rows]
    fitted = step_time.fit(rows, targets)
    for r, y in zip(rows, targets):
        assert step_time._dot(r, fitted) == pytest.approx(y, rel=1e-6)


def test_refit_moves_the_prediction_to_a_measurement(data):
    prior, _ = data.constants("cpu")
    hw = profile("cpu")
    s = shape(64, 2, 4096, 128)
    measured = 3 * prior.seconds_per_token(s, hw)
    refitted = step_time.refit(prior, [s.terms(hw.peak_flops, hw.hbm_bytes_per_s)], [measured])
    assert refitted.seconds_per_token(s, hw) == pytest.approx(measured, rel=0.02)
    assert step_time.refit(prior, [], []).theta == pytest.approx(prior.theta)
