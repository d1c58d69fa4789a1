"""specs/arctic_snowcoder and specs/phi1 encode the published recipes (brief §4B, §4C)."""

from __future__ import annotations

import pytest

from compiler.problems import SpecError
from compiler.spec import CosinePhase, LinearPhase, WarmupPhase
from compiler.specset import load_spec_set
from tests.specs.shipped import SPECS, compiled, resolved, with_concrete

B = 10**9


def test_snowcoder_three_stages_each_from_the_last():
    runs = compiled("arctic_snowcoder").by_name()
    assert set(runs) == {"snowcoder-stage1", "snowcoder-stage2", "snowcoder-stage3"}
    assert runs["snowcoder-stage1"].parent_name is None
    assert runs["snowcoder-stage2"].parent_name == "snowcoder-stage1"
    assert runs["snowcoder-stage3"].parent_name == "snowcoder-stage2"


def test_snowcoder_model_batch_and_budgets():
    specs = resolved("arctic_snowcoder")
    for spec in specs.values():
        m = spec.model
        assert (m.d_model, m.d_ff, m.n_heads, m.n_kv_heads, m.n_layers, m.vocab_size) == (2048, 5632, 16, 16, 24, 64_000)
        assert m.block == "sequential" and m.tied_embeddings
        assert (spec.batch.sequences, spec.batch.sequence_length) == (512, 8192)
    for name, paper in (("snowcoder-stage1", 500 * B), ("snowcoder-stage2", 50 * B), ("snowcoder-stage3", 5 * B)):
        assert abs(specs[name].total_tokens - paper) <= specs[name].tokens_per_step
    stage1 = specs["snowcoder-stage1"].data.sources["code"]
    assert stage1.declared_tokens == 400 * B


def test_snowcoder_stage2_is_the_top_12_5b_four_times():
    spec = resolved("arctic_snowcoder")["snowcoder-stage2"]
    (source,) = spec.data.sources.values()
    assert source.declared_tokens == 12_500_000_000 and source.max_repeats == 4
    assert 3 * source.declared_tokens < source.tokens <= 4 * source.declared_tokens


def test_snowcoder_stage2_rounded_up_would_need_a_fifth_pass(tmp_path):
    text = (SPECS / "arctic_snowcoder" / "snowcoder.yaml").read_text()
    assert "steps: 11920 " in text
    bad = tmp_path / "snowcoder.yaml"
    bad.write_text(text.replace("steps: 11920 ", "steps: 11921 "))
    with pytest.raises(SpecError) as caught:
        load_spec_set([bad])
    assert "needs 5 repeats of the 12,500,000,000 declared tokens" in str(caught.value)
    assert "but max_repeats is 4" in str(caught.value)


def test_snowcoder_schedules():
    specs = resolved("arctic_snowcoder")
    warmup, cosine = specs["snowcoder-stage1"].schedule.phases
    assert isinstance(warmup, WarmupPhase) and (warmup.length, warmup.start, warmup.peak) == (600, 0.0, 5.3e-4)
    assert isinstance(cosine, CosinePhase) and (cosine.start, cosine.floor) == (5.3e-4, 5.3e-5)
    rewarm, decay = specs["snowcoder-stage2"].schedule.phases
    assert isinstance(rewarm, WarmupPhase) and (rewarm.length, rewarm.start, rewarm.peak) == (1000, 0.0, 5.3e-4)
    assert isinstance(decay, LinearPhase) and (decay.start, decay.end) == (5.3e-4, 0.0)
    stage3 = specs["snowcoder-stage3"]
    assert stage3.data.sources["synthetic"].tokens == pytest.approx(2 * B, rel=1e-3)   # ~2B synthetic of 5B


def test_phi1_base_is_the_first_24k_steps_of_the_36k_run():
    specs = with_concrete("phi1", "phi1-pretrain-36k")
    full, base = specs["phi1-pretrain-36k"], specs["phi1-base"]
    assert (full.steps, base.steps) == (36_000, 24_000)
    assert (base.batch.sequences, base.batch.sequence_length) == (1024, 2048)
    warmup, decay = full.schedule.phases
    assert (warmup.length, warmup.peak, decay.end) == (750, 1e-3, 0.0)
    # the 36k run's LR at step 24k (linear from the peak at step 750 to the end at 36k) ...
    at_24k = decay.start + (decay.end - decay.start) * (24_000 - warmup.length) / decay.length
    base_warmup, base_decay = base.schedule.phases
    assert base_warmup == warmup
    # ... is where phi-1-base's decay ends, so the two runs share their first 24k learning rates
    assert base_decay.end == pytest.approx(at_24k, rel=1e-12)
    assert base_decay.length == 24_000 - 750
    assert base.optimizer == full.optimizer and base.optimizer.weight_decay == 0.1
    passes = base.data.sources["filtered-code"].tokens / base.data.sources["filtered-code"].declared_tokens
    assert 7 < passes < 8   # "~8 passes"
    assert base.total_tokens == pytest.approx(50 * B, rel=0.01)


def test_phi1_finetune_from_phi1_base():
    runs = compiled("phi1").by_name()
    assert set(runs) == {"phi1-base", "phi1-finetune"}
    fine = runs["phi1-finetune"]
    assert fine.parent_name == "phi1-base" and fine.parent_hash == runs["phi1-base"].hash
    spec = fine.spec
    assert (spec.steps, spec.batch.sequences, spec.batch.sequence_length) == (6000, 256, 2048)
    warmup, decay = spec.schedule.phases
    assert (warmup.length, warmup.peak) == (50, 1e-4) and isinstance(decay, LinearPhase)
    assert spec.optimizer.weight_decay == 0.01
    (source,) = spec.data.sources.values()
    assert source.declared_tokens == 180_000_000
    assert spec.mesh.accelerator == "gpu-h100" and spec.mesh.chips == 8
    m = spec.model
    assert (m.n_layers, m.d_model, m.n_heads, m.head_dim, m.rotary_dim, m.vocab_size) == (24, 2048, 32, 64, 32, 51_200)
    assert m.block == "parallel" and not m.tied_embeddings
