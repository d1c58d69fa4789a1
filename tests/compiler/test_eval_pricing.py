"""Eval jobs in the price: which evals a run owes, their forward tokens, loads, and what the totals make of them."""

from __future__ import annotations

import math

import pytest

from compiler.eval_pricing import eval_tokens
from compiler.evals import forward_tokens, spec_set_derivations
from compiler.lock import load_locked_spec_set, tokenizer_key
from compiler.plan import plan
from compiler.step_time import Constants, StepShape, load
from compiler.hardware import profile
from tests.conftest import REPO


@pytest.fixture(scope="module")
def tiny():
    return load_locked_spec_set([REPO / "specs" / "tiny"])


def _by_name(result):
    return {r.run.name: r for r in result.runs}


def test_every_unbuilt_eval_is_priced_at_the_forward_share_of_the_step_plus_its_loads(tiny):
    runs = _by_name(plan(tiny.spec_set, lock=tiny.lock))
    code = runs["tiny-code"]
    spec = code.run.spec
    # 60 steps, evals every 20: steps 20, 40, 60 × 5 sets (4 held-out, 1 choice); one load per step
    assert (code.price.evals.to_build, code.price.evals.built, code.price.evals.checkpoint_loads) == (15, 0, 3)
    mine = [d for d in spec_set_derivations(tiny.spec_set.runs, tiny.lock) if d.run_name == "tiny-code"]
    bound = sum(math.ceil(forward_tokens(d) / spec.tokens_per_step) * spec.tokens_per_step for d in mine)
    # held-out sets at their corpus's locked tokens per byte (BPE makes ~3 bytes a token): well under the bound
    assert code.price.evals.forward_tokens < bound / 1.5
    assert code.price.evals.forward_tokens % spec.tokens_per_step == 0  # whole batches
    data, hardware = load(), profile("cpu")
    constants, _ = data.constants("cpu")
    shape = StepShape.of(spec)
    share = constants.forward_seconds_per_token(shape, hardware) / constants.seconds_per_token(shape, hardware)
    per_token = code.price.seconds_per_step * spec.mesh.chips / spec.tokens_per_step
    per_load = code.price.overheads["checkpoints"].seconds / code.price.checkpoint_saves
    expected = code.price.evals.forward_tokens * per_token * share / spec.mesh.chips + 3 * per_load
    assert code.price.overheads["evals"].seconds == pytest.approx(expected)
    assert "15 evals to build" in code.price.overheads["evals"].source
    assert code.total_chip_hours == pytest.approx(code.chip_hours + code.overhead_chip_hours)
    # without a lock the evals cannot be hashed: not priced, and said so
    bare = _by_name(plan(tiny.spec_set))["tiny-code"]
    assert bare.price.evals is None and bare.price.overheads["evals"].seconds == 0
    assert "no lock" in bare.price.overheads["evals"].source


def test_a_forward_pass_is_a_third_of_a_step_without_remat_and_less_with_it():
    data, hardware = load(), profile("tpu-v5e")
    constants = Constants.from_json(data.families["tpu"]["constants"])
    base = StepShape(1024, 24, 32000, 2048, 300_000_000, 1024, "none")
    assert constants.forward_seconds_per_token(base, hardware) == pytest.approx(
        constants.seconds_per_token(base, hardware) / 3)
    full = StepShape(**{**base.__dict__, "remat": "full"})
    assert constants.forward_seconds_per_token(full, hardware) == constants.forward_seconds_per_token(base, hardware)
    assert constants.forward_seconds_per_token(full, hardware) < constants.seconds_per_token(full, hardware) / 3


def test_with_a_fixed_mfu_an_eval_token_costs_a_third_of_a_training_token(tiny):
    code = _by_name(plan(tiny.spec_set, lock=tiny.lock, mfu=0.5))["tiny-code"]
    spec = code.run.spec
    per_load = code.price.overheads["checkpoints"].seconds / code.price.checkpoint_saves
    forward = code.price.overheads["evals"].seconds - 3 * per_load
    training_per_token = code.price.seconds_per_step / spec.tokens_per_step
    assert forward == pytest.approx(code.price.evals.forward_tokens * training_per_token / 3)


def test_built_evals_cost_nothing_and_a_built_run_still_owes_its_missing_evals(tiny):
    derivations = spec_set_derivations(tiny.spec_set.runs, tiny.lock)
    code_hash = tiny.spec_set.by_name()["tiny-code"].hash
    mine = [d.hash for d in derivations if d.run_hash == code_hash]
    done = _by_name(plan(tiny.spec_set, lock=tiny.lock, built_evals=mine))["tiny-code"]
    assert done.price.evals.to_build == 0 and done.price.evals.built == 15 and done.eval_chip_hours == 0
    assert done.price.overheads["evals"].source == "all 15 evals built"
    partly = _by_name(plan(tiny.spec_set, lock=tiny.lock, built_evals=mine[:5]))["tiny-code"]
    assert (partly.price.evals.to_build, partly.price.evals.built) == (10, 5)

    # tiny-code built, none of its evals: `runix launch` builds them, so the totals keep them
    result = plan(tiny.spec_set, built={code_hash}, lock=tiny.lock)
    code = _by_name(result)["tiny-code"]
    assert code.built and code.eval_chip_hours > 0
    pending = [r for r in result.runs if not r.built]
    totals = result.totals()
    assert totals.total_chip_hours == pytest.approx(sum(r.total_chip_hours for r in pending) + code.eval_chip_hours)
    assert totals.eval_chip_hours == pytest.approx(sum(r.eval_chip_hours for r in result.runs))


def test_held_out_tokens_use_the_lock_s_count_and_never_exceed_the_bound(tiny):
    spec = tiny.spec_set.by_name()["tiny-code"].spec
    entry = tiny.lock.sources["builtin://code"].locked
    ratio = entry["token_counts"][tokenizer_key(spec)] / entry["num_text_bytes"]
    heldout = next(d for d in spec_set_derivations(tiny.spec_set.runs, tiny.lock)
                   if d.kind == "heldout" and d.uri == "builtin://code")
    window, max_bytes = heldout.document["settings"]["window"], heldout.document["settings"]["max_bytes"]
    assert eval_tokens(heldout, ratio) == (math.ceil(max_bytes * ratio / window) + 1) * window
    assert eval_tokens(heldout, None) == forward_tokens(heldout)
    assert eval_tokens(heldout, 5.0) == forward_tokens(heldout)  # a ratio above one token per byte: the bound holds
