"""specs/to_code is the 64-model suite of "To Code, or Not To Code?" (arXiv 2408.10914).

The numbers below are the paper's (brief §4A) or the README's stated
assumptions; the test holds the spec files to them.
"""

from __future__ import annotations

import math

import pytest

from compiler.flops import parameter_count
from compiler.spec import CosinePhase, LinearPhase, ParentInit, ScratchInit, WarmupPhase
from tests.specs.shipped import TOKENS_PER_STEP_TO_CODE, authored, compiled, resolved

B = 10**9
SIZES = ("470m", "2.8b")
SWEEP = (0, 25, 50, 75, 90, 100)

# Family → (paper tokens of the run, {source: paper tokens}), per size.
PRETRAIN = {
    "text-only": {"text": 400},
    "balanced-only": {"text": 200, "code": 200},
    **{f"sweep-code{c}": {"text": 200 * (100 - c) / 100, "code": 200 * c / 100} for c in SWEEP},
    "balanced-text": {"text": 180, "code": 20},
    "code-markup": {"code": 160, "markup": 40},
    "code-text": {"text": 180, "code": 20},
    "code-adjacent": {"code": 170, "code-adjacent": 30},
    "code-synthetic": {"code": 180, "synthetic": 20},
    "balanced-synthetic": {"text": 100, "code": 90, "synthetic": 10},
    "balanced-synthetic-text": {"text": 180, "code": 20},
}
PARENT = {
    "balanced-text": "sweep-code50",          # balanced → text starts from the 100B/100B model
    "code-text": "code-markup",               # code → text starts from the 80/20 code LM
    "balanced-synthetic-text": "balanced-synthetic",
}
COOL_CODE_BASES = ("text-only", "balanced-only", "balanced-text", "code-text", "balanced-synthetic-text",
                   *(f"sweep-code{c}" for c in SWEEP), "code-markup", "code-adjacent", "code-synthetic")
COOL_TEXT_BASES = ("balanced-text", "code-text", "balanced-synthetic-text")
COOL_CODE = {"text": 24, "math": 4, "instruction": 4, "code": 8}     # +32B text side, +8B code
COOL_TEXT = {"text": 32, "math": 4, "instruction": 4}                # +40B, no code
DECLARED = {"text": 503 * B, "code": 139 * B, "markup": 180 * B, "code-adjacent": 21_400_000_000,
            "synthetic": 3_200_000_000}


def expected_runs() -> dict[str, tuple[str | None, dict[str, float]]]:
    """Run name → (parent name, {source: paper tokens in B})."""
    runs = {}
    for size in SIZES:
        for family, mix in PRETRAIN.items():
            parent = PARENT.get(family)
            runs[f"{size}-{family}"] = (f"{size}-{parent}" if parent else None, mix)
        for base in COOL_CODE_BASES:
            runs[f"{size}-{base}-cool-code"] = (f"{size}-{base}", COOL_CODE)
        for base in COOL_TEXT_BASES:
            runs[f"{size}-{base}-cool-text"] = (f"{size}-{base}", COOL_TEXT)
    return runs


def test_exactly_64_runs_32_per_size_named_as_in_the_readme():
    runs = compiled("to_code").runs
    assert len(runs) == 64
    assert {run.name for run in runs} == set(expected_runs())
    for size in SIZES:
        assert sum(run.name.startswith(size + "-") for run in runs) == 32


def test_chains_have_the_expected_parents():
    by_name = compiled("to_code").by_name()
    for name, (parent, _) in expected_runs().items():
        run = by_name[name]
        assert run.parent_name == parent, name
        if parent is not None:
            assert run.parent_hash == by_name[parent].hash  # the child's hash contains its parent's


def test_parents_come_before_children_in_the_plan():
    order = [run.name for run in compiled("to_code").runs]
    for name, (parent, _) in expected_runs().items():
        if parent:
            assert order.index(parent) < order.index(name)


@pytest.mark.parametrize("name", sorted(expected_runs()))
def test_budgets_match_the_papers_tables(name):
    spec = resolved("to_code")[name]
    _, mix = expected_runs()[name]
    paper_total = sum(mix.values()) * B
    # steps: the paper's token count rounded to the nearest whole step of 512 × 8192
    assert spec.tokens_per_step == TOKENS_PER_STEP_TO_CODE
    assert spec.steps == round(paper_total / TOKENS_PER_STEP_TO_CODE)
    budgets = {source: src.tokens for source, src in spec.data.sources.items()}
    assert set(budgets) == {source for source, tokens in mix.items() if tokens}
    assert sum(budgets.values()) == spec.steps * TOKENS_PER_STEP_TO_CODE
    assert abs(spec.total_tokens - paper_total) <= TOKENS_PER_STEP_TO_CODE / 2    # only the step rounding
    for source, tokens in budgets.items():
        # the paper's split of the run, allocated in whole sequences (at most one sequence off)
        assert abs(tokens - mix[source] * B / paper_total * spec.total_tokens) <= 8192, source
        assert tokens % 8192 == 0


def test_balanced_only_is_50_50_and_cooldown_with_code_is_32_8():
    balanced = authored("to_code")["470m-balanced-only"].data.sources
    assert (balanced["text"].share, balanced["code"].share) == (0.5, 0.5)
    cool = resolved("to_code")["2.8b-balanced-text-cool-code"].data.sources
    text_side = sum(src.tokens for src in cool.values() if src.role != "code")
    assert text_side == pytest.approx(32 * B, rel=1e-4)
    assert cool["code"].tokens == pytest.approx(8 * B, rel=1e-4)


def test_declared_sizes_and_the_fewest_passes_each_budget_needs():
    for name, spec in resolved("to_code").items():
        for source, src in spec.data.sources.items():
            if source in DECLARED:
                assert src.declared_tokens == DECLARED[source]
            if src.declared_tokens:
                needed = max(1, math.ceil(src.tokens / src.declared_tokens))
                assert src.max_repeats == needed, f"{name}.{source}: max_repeats {src.max_repeats}, needs {needed}"


def test_schedules_warmup_1325_cosine_and_cooldowns_anneal_linearly_from_the_parents_floor():
    specs = resolved("to_code")
    for name, spec in specs.items():
        phases = spec.schedule.phases
        if name.endswith(("-cool-code", "-cool-text")):
            (anneal,) = phases
            assert isinstance(anneal, LinearPhase) and anneal.end == 1e-6
            parent = specs[spec.init.run]
            assert anneal.start == parent.schedule.phases[-1].floor       # no jump in the LR
            assert spec.init.optimizer_state == "carry"
        else:
            warmup, cosine = phases
            assert isinstance(warmup, WarmupPhase) and warmup.length == 1325 and warmup.start == 0.0
            assert isinstance(cosine, CosinePhase) and cosine.floor == pytest.approx(warmup.peak / 10)
            assert warmup.peak == {"470m": 3e-4, "2.8b": 1.6e-4}[name.split("-")[0]]


def test_scratch_and_parent_inits():
    for name, spec in resolved("to_code").items():
        parent, _ = expected_runs()[name]
        assert isinstance(spec.init, ParentInit if parent else ScratchInit), name


def test_model_sizes_and_tpu_v5e_mesh():
    for name, spec in resolved("to_code").items():
        params = parameter_count(spec.model).total
        size = name.split("-")[0]
        assert params == pytest.approx({"470m": 470e6, "2.8b": 2.8e9}[size], rel=0.01)
        assert spec.model.vocab_size == 256_000 and spec.model.block == "parallel"
        assert (spec.batch.sequences, spec.batch.sequence_length) == (512, 8192)
        mesh = spec.mesh
        assert mesh.accelerator == "tpu-v5e" and mesh.chips == 256
        assert spec.batch.sequences % (mesh.axes.data * mesh.axes.fsdp) == 0
