"""Parameter counts and training FLOPs against values computed by hand."""

from __future__ import annotations

import pytest

from compiler.flops import parameter_count, training_flops
from compiler.resolve import resolve_model
from compiler.spec import ModelSpec
from compiler.specset import load_spec_set
from tests.conftest import REPO


def test_tiny_parameters_by_hand():
    # tiny: V=4096, D=64, L=2, H=K=4, h=16, F=256, parallel block, tied embedding.
    params = parameter_count(resolve_model(ModelSpec(preset="tiny")))
    assert params.embedding == 4096 * 64 == 262_144
    assert params.output == 0
    assert params.attention == 2 * 64 * 16 * (2 * 4 + 2 * 4) == 32_768
    assert params.mlp == 2 * 3 * 64 * 256 == 98_304
    assert params.norms == 2 * 64 + 64 == 192
    assert params.non_embedding == 131_264
    assert params.total == 393_408


def test_snowcoder_parameters_match_the_published_size():
    # Arctic-SnowCoder-1.3B: D=2048, F=5632, 16 heads, 24 layers, V=64,000, tied, sequential block.
    params = parameter_count(resolve_model(ModelSpec(preset="snowcoder-1.3b")))
    assert params.attention == 24 * 4 * 2048 * 2048 == 402_653_184
    assert params.mlp == 24 * 3 * 2048 * 5632 == 830_472_192
    assert params.norms == 24 * 2 * 2048 + 2048
    assert params.total == 1_364_297_728  # "1.3B"


def test_untied_output_layer_counts_once_more():
    tied = parameter_count(resolve_model(ModelSpec(preset="tiny")))
    untied = parameter_count(resolve_model(ModelSpec(preset="tiny", tied_embeddings=False)))
    assert untied.output == 64 * 4096
    assert untied.total - tied.total == 64 * 4096
    assert untied.non_embedding == tied.non_embedding


def test_grouped_query_attention_shrinks_k_and_v_only():
    full = parameter_count(resolve_model(ModelSpec(preset="tiny")))
    gqa = parameter_count(resolve_model(ModelSpec(preset="tiny", n_kv_heads=1)))
    # Wq and Wo keep 2·D·H·h per layer; Wk and Wv go from 2·D·4·h to 2·D·1·h.
    assert full.attention - gqa.attention == 2 * 2 * 64 * 16 * (4 - 1)


@pytest.fixture(scope="module")
def tiny_runs():
    return load_spec_set([REPO / "specs" / "tiny"]).by_name()


def test_tiny_code_flops_by_hand(tiny_runs):
    spec = tiny_runs["tiny-code"].spec  # 60 steps × 8 × 128 = 61,440 tokens, S = 128
    flops = training_flops(spec)
    assert flops.dense_per_token == 6 * (32_768 + 98_304) == 786_432
    assert flops.attention_per_token == 6 * 2 * 4 * 16 * 128 == 98_304
    assert flops.output_per_token == 6 * 64 * 4096 == 1_572_864
    assert flops.per_token == 2_457_600
    assert flops.tokens == 61_440
    assert flops.total == 2_457_600 * 61_440 == 150_994_944_000


def test_flops_are_close_to_6ND_when_attention_and_vocab_are_small(tiny_runs):
    spec = tiny_runs["tiny-code"].spec
    model = spec.model.model_copy(update={"vocab_size": 8, "d_model": 1024, "d_ff": 4096, "n_heads": 16, "head_dim": 64})
    small = spec.model_copy(update={"model": model, "batch": spec.batch.model_copy(update={"sequence_length": 2})})
    flops = training_flops(small)
    n = parameter_count(model).non_embedding
    assert flops.per_token == pytest.approx(6 * n, rel=1e-3)
