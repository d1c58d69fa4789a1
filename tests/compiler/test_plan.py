"""The plan: per-run prices, totals, built runs, unresolved inputs, and runs that cannot run on their mesh."""

from __future__ import annotations

import pytest

from compiler.lock import load_locked_spec_set
from compiler.plan import plan
from compiler.problems import SpecError
from compiler.specset import load_spec_set
from tests.conftest import MINIMAL_RUN, REPO
from tests.lockfixture import lock_like


@pytest.fixture(scope="module")
def tiny_locked():
    return load_locked_spec_set([REPO / "specs" / "tiny"])


@pytest.fixture(scope="module")
def tiny(tiny_locked):
    """The tiny spec set hashed with its lock, as `runix hash` and `runix compile` hash it."""
    return tiny_locked.spec_set


def test_runs_in_dependency_order_with_prices(tiny):
    result = plan(tiny)
    names = [r.run.name for r in result.runs]
    assert names.index("tiny-code") < names.index("tiny-code-text") < names.index("tiny-cooldown")
    code = {r.run.name: r for r in result.runs}["tiny-code"]
    # cpu profile: 50 GFLOP/s peak; the steps are priced at the MFU the step-time model gives this shape
    assert 0 < code.mfu < 1 and code.price.source == "model"
    assert code.chip_hours == pytest.approx(150_994_944_000 / (50e9 * code.mfu) / 3600)
    assert code.total_chip_hours == pytest.approx(code.chip_hours + code.overhead_chip_hours)
    assert code.overhead_chip_hours > 0  # compile and 3 checkpoint saves
    assert code.wall_hours == code.total_chip_hours  # one chip
    assert code.status == "to build"
    # --mfu prices the steps at that MFU: FLOPs / (50e9 · 0.3) / 3600 chip-hours
    fixed = {r.run.name: r for r in plan(tiny, mfu=0.30).runs}["tiny-code"]
    assert fixed.chip_hours == pytest.approx(150_994_944_000 / (50e9 * 0.30) / 3600) and fixed.mfu == 0.30


def test_totals_sum_the_runs_to_build(tiny):
    result = plan(tiny)
    totals = result.totals()
    assert totals.runs == totals.to_build == 6 and totals.built == 0
    assert totals.tokens == sum(r.run.spec.total_tokens for r in result.runs) == (60 + 40 + 20 + 3 * 30) * 1024
    assert totals.flops == sum(r.flops.total for r in result.runs)
    assert totals.chip_hours == pytest.approx(sum(r.chip_hours for r in result.runs))
    assert totals.total_chip_hours == pytest.approx(sum(r.total_chip_hours for r in result.runs))
    assert totals.total_chip_hours == pytest.approx(totals.chip_hours + totals.overhead_chip_hours)
    by_name = {r.run.name: r for r in result.runs}
    chain = sum(by_name[n].wall_hours for n in ("tiny-code", "tiny-code-text", "tiny-cooldown"))
    assert totals.critical_path_hours == pytest.approx(chain)


def test_a_built_run_costs_nothing(tiny):
    code = tiny.by_name()["tiny-code"]
    result = plan(tiny, built={code.hash})
    totals, full = result.totals(), plan(tiny).totals()
    assert {r.run.name: r.status for r in result.runs}["tiny-code"] == "built"
    assert totals.built == 1 and totals.to_build == 5
    priced = {r.run.name: r for r in result.runs}["tiny-code"]
    assert totals.chip_hours == pytest.approx(full.chip_hours - priced.chip_hours)
    assert totals.flops == full.flops - priced.flops.total
    # the chain now starts from a built parent
    assert totals.critical_path_hours < full.critical_path_hours


def test_mfu_override_scales_the_price(tiny):
    default, halved = plan(tiny, mfu=0.3), plan(tiny, mfu=0.15)
    assert halved.mfu_override == 0.15 and all(r.price.source == "--mfu" for r in halved.runs)
    assert halved.totals().chip_hours == pytest.approx(2 * default.totals().chip_hours)
    with pytest.raises(ValueError):
        plan(tiny, mfu=0)


def test_the_tiny_runs_have_every_input_locked(tiny_locked):
    result = plan(tiny_locked.spec_set, lock=tiny_locked.lock)
    assert all(r.unresolved == () and r.can_launch_here for r in result.runs)
    assert result.totals().unresolved == 0
    assert all(r["unresolved_inputs"] == [] for r in result.to_json()["runs"])


def test_runs_with_unresolved_inputs_are_priced_and_list_them():
    to_code = load_locked_spec_set([REPO / "specs" / "to_code"])
    result = plan(to_code.spec_set, lock=to_code.lock)
    assert len(result.runs) == 64 and result.totals().unresolved == 64
    for r in result.runs:
        assert r.chip_hours > 0 and not r.can_launch_here
        assert [(u.what, u.uri, u.reason) for u in r.unresolved] == to_code.lock.unresolved_inputs(r.run.spec)
        assert any(u.what == "tokenizer" for u in r.unresolved)  # the Cohere tokenizer is hf://, not read here
    first = result.to_json()["runs"][0]
    assert {"input", "uri", "reason"} == set(first["unresolved_inputs"][0])
    # the same runs without their lock: same prices, nothing known about inputs
    bare = plan(to_code.spec_set)
    assert bare.totals().chip_hours == result.totals().chip_hours and bare.totals().unresolved == 0
    # a built run is not counted among those that cannot launch
    built = plan(to_code.spec_set, {to_code.spec_set.runs[0].hash}, lock=to_code.lock)
    assert built.totals().unresolved == 63


def test_a_budget_over_the_locked_token_count_is_an_error(write_spec, tiny_locked):
    count = tiny_locked.lock.token_count("builtin://code", tiny_locked.spec_set.by_name()["tiny-code"].spec)
    assert count  # the shipped tiny lock counts the built-in corpora under the tiny tokenizer
    steps = count // (8 * 128) + 10  # one pass over the code corpus is not enough
    text = MINIMAL_RUN.replace("steps: 10", f"steps: {steps}")
    path = write_spec(text)
    lock_like([path])
    locked = load_locked_spec_set([path])
    with pytest.raises(SpecError) as err:
        plan(locked.spec_set, lock=locked.lock)
    (problem,) = err.value.problems
    assert problem.path == "runs[base].data.sources.code.max_repeats"
    assert f"budget {steps * 1024:,} tokens ({steps * 8:,} sequences of 128) needs 2 repeats of the {count:,} tokens" in problem.message
    assert "max_repeats is 1" in problem.message and problem.location.line > 0
    plan(locked.spec_set)  # without the lock nothing is counted, so nothing is checked
    plan(locked.spec_set, {locked.spec_set.runs[0].hash}, lock=locked.lock)  # built: it already ran
    path.write_text(text.replace("share: 1.0}", "share: 1.0, max_repeats: 2}"))
    lock_like([path])
    locked = load_locked_spec_set([path])
    assert plan(locked.spec_set, lock=locked.lock).totals().runs == 1


def big_run(name="too-big", accelerator="tpu-v5e", chips=1, extra=""):
    return MINIMAL_RUN.replace("name: base", f"name: {name}").replace(
        "model: {preset: tiny}", "model: {preset: to-code-470m}"
    ).replace(
        "batch: {sequences: 8, sequence_length: 128}", "batch: {sequences: 8, sequence_length: 8192}"
    ) + f"    mesh: {{accelerator: {accelerator}, chips: {chips}}}\n" + extra


def test_a_run_that_does_not_fit_is_an_error_naming_it(write_spec):
    specs = load_spec_set([write_spec(big_run())])
    with pytest.raises(SpecError) as err:
        plan(specs)
    (problem,) = err.value.problems
    assert "too-big" in problem.message
    assert "16 GB" in problem.message and "GB per chip" in problem.message
    assert "activations" in problem.message and "remat none" in problem.message
    assert problem.location.line > 0


def test_every_run_that_does_not_fit_is_reported_at_once(write_spec):
    text = big_run("big-a") + big_run("big-b").removeprefix("runs:\n")
    with pytest.raises(SpecError) as err:
        plan(load_spec_set([write_spec(text)]))
    assert sorted(p.message.split("'")[1] for p in err.value.problems) == ["big-a", "big-b"]


def test_tensor_ways_must_split_heads_and_mlp(write_spec):
    text = MINIMAL_RUN + "    mesh: {accelerator: cpu, chips: 3, axes: {tensor: 3}}\n"
    with pytest.raises(SpecError) as err:
        plan(load_spec_set([write_spec(text)]))
    messages = " ".join(p.message for p in err.value.problems)
    assert "tensor (3 ways) does not divide model.n_heads (4)" in messages
    assert "model.d_ff (256)" in messages


def test_json_is_plain_data(tiny):
    import json

    data = json.loads(json.dumps(plan(tiny).to_json()))
    assert data["format"] == 1
    assert [r["name"] for r in data["runs"]][0] == "tiny-code"
    assert data["runs"][0]["memory_per_chip"]["remat"] == "none"
