"""Each cross-field check reports file, line and field path — all at once."""

import pytest

from compiler.problems import SpecError
from compiler.specset import load_spec_set
from tests.conftest import MINIMAL_RUN


def problems(write_spec, text):
    path = write_spec(text)
    with pytest.raises(SpecError) as info:
        load_spec_set([path])
    return info.value.problems


def edit(**replacements):
    text = MINIMAL_RUN
    for old, new in replacements.items():
        assert old in text or old.replace("_", " ") in text
        text = text.replace(old, new)
    return text


def test_minimal_run_is_valid(write_spec):
    (run,) = load_spec_set([write_spec(MINIMAL_RUN)]).runs
    assert run.spec.total_tokens == 10 * 8 * 128
    assert run.spec.data.sources["code"].tokens == 10 * 8 * 128


def test_tokens_disagreeing_with_steps_says_how_to_fix(write_spec):
    (p,) = problems(write_spec, MINIMAL_RUN.replace("steps: 10", "steps: 10\n    tokens: 10000"))
    assert p.path == "runs[base].tokens" and p.location.line == 6
    assert "set tokens: 10240" in p.message and "steps" in p.message


def test_tokens_not_whole_steps(write_spec):
    (p,) = problems(write_spec, MINIMAL_RUN.replace("steps: 10", "tokens: 10000"))
    assert "9216 (9 steps) or 10240 (10 steps)" in p.message


def test_budgets_must_add_up(write_spec):
    text = MINIMAL_RUN.replace('share: 1.0}', 'tokens: 4096}\n        text: {uri: "builtin://text", role: text, tokens: 4096}')
    (p,) = problems(write_spec, text)
    assert p.path == "runs[base].data.sources" and "short by 2048" in p.message


def test_shares_must_add_to_one(write_spec):
    (p,) = problems(write_spec, MINIMAL_RUN.replace("share: 1.0", "share: 0.7"))
    assert "add up to 0.7" in p.message


def test_schedule_must_cover_the_run(write_spec):
    (p,) = problems(write_spec, MINIMAL_RUN.replace("{kind: cosine, floor: 1e-4}", "{kind: cosine, length: 5, floor: 1e-4}"))
    assert "cover 7 steps but the run has 10" in p.message


def test_warmup_shorter_than_run(write_spec):
    found = problems(write_spec, MINIMAL_RUN.replace("length: 2, peak", "length: 10, peak"))
    assert any("not shorter than the run" in p.message for p in found)


def test_mesh_axes_and_batch_split(write_spec):
    text = MINIMAL_RUN.replace("steps: 10", "steps: 10\n    mesh: {accelerator: tpu-v5e, chips: 8, axes: {data: 3, fsdp: 2}}")
    messages = {p.path: p.message for p in problems(write_spec, text)}
    assert "= 6 ≠ chips (8)" in messages["runs[base].mesh.axes"]
    assert "do not split over data × fsdp = 6" in messages["runs[base].batch.sequences"]


def test_every_problem_at_once_with_types_and_unknown_keys(write_spec):
    text = MINIMAL_RUN.replace("sequences: 8", "sequences: -8").replace("steps: 10", "stepz: 10\n    optimizer: {b1: .nan}")
    found = problems(write_spec, text)
    paths = {p.path for p in found}
    assert {"runs[base].batch.sequences", "runs[base].stepz", "runs[base].optimizer.b1"} <= paths
    assert all(p.location.file.endswith("spec.yaml") and p.location.line > 0 for p in found)


def test_parents_exist_no_cycles_shapes_match(write_spec):
    text = MINIMAL_RUN + """\
  - {name: child, extends: base, init: {kind: parent, run: missing}}
  - {name: c1, extends: base, init: {kind: parent, run: c2}}
  - {name: c2, extends: base, init: {kind: parent, run: c1}}
  - {name: wide, extends: base, model: {d_model: 128}, init: {kind: parent, run: base}}
"""
    messages = [p.message for p in problems(write_spec, text)]
    assert any("'missing' is not in this spec set" in m for m in messages)
    assert any("initialization cycle" in m for m in messages)
    assert any("differs from parent 'base'" in m for m in messages)


def test_unknown_preset_and_attention_on_wrong_accelerator(write_spec):
    text = MINIMAL_RUN.replace("preset: tiny", "preset: tinyy").replace("steps: 10", "steps: 10\n    kernels: {attention: cudnn}")
    messages = " ".join(p.message for p in problems(write_spec, text))
    assert "unknown preset 'tinyy'" in messages and "cudnn runs only on gpu" in messages


def test_repeats_beyond_declared_size(write_spec):
    text = MINIMAL_RUN.replace("share: 1.0", "share: 1.0, declared_tokens: 1000, max_repeats: 2")
    (p,) = problems(write_spec, text)
    # 1000 tokens are 7 windows of 128 + 1: 80 sequences need 12 passes (not 10240 / 1000 -> 11)
    assert "needs 12 repeats of the 1,000 declared tokens (7 sequences of 128 + 1" in p.message
    assert p.path.endswith("max_repeats")


def test_the_1024_token_source_needs_two_repeats_as_the_runtime_counts(write_spec):
    """1,024 tokens at L = 128 are 7 windows: a 1,024-token budget (8 sequences) needs 2 repeats."""
    text = MINIMAL_RUN.replace("steps: 10", "steps: 1").replace("share: 1.0", "share: 1.0, declared_tokens: 1024, max_repeats: 1")
    text = text.replace("{kind: warmup, length: 2, peak: 1e-3}", "{kind: constant, length: 1, value: 1e-3}")
    text = text.replace("        - {kind: cosine, floor: 1e-4}\n", "")
    (p,) = problems(write_spec, text)
    assert "budget 1,024 tokens (8 sequences of 128) needs 2 repeats" in p.message
    assert p.path.endswith("code.max_repeats")
    (ok,) = load_spec_set([write_spec(text.replace("max_repeats: 1", "max_repeats: 2"))]).runs
    assert ok.spec.data.sources["code"].max_repeats == 2


def test_reader_options_only_where_files_are_read(write_spec):
    text = MINIMAL_RUN.replace("share: 1.0}", "share: 1.0, format: parquet, text_field: body}")
    messages = sorted(p.message for p in problems(write_spec, text))
    assert len(messages) == 2 and all("builtin://code is a built-in corpus" in m for m in messages)
    ok = MINIMAL_RUN.replace('"builtin://code", role: code, share: 1.0}',
                             '"/data/web/*.parquet", role: text, share: 1.0, format: parquet, text_field: content}')
    (run,) = load_spec_set([write_spec(ok)]).runs
    assert run.spec.data.sources["code"].format == "parquet"
    assert run.spec.data.sources["code"].text_field == "content"
    default = MINIMAL_RUN.replace('"builtin://code", role: code, share: 1.0}',
                                  '"/data/web.jsonl", role: text, share: 1.0, text_field: text}')
    (spelled,) = load_spec_set([write_spec(default, "b.yaml")]).runs
    (plain,) = load_spec_set([write_spec(MINIMAL_RUN.replace('"builtin://code"', '"/data/web.jsonl"'), "c.yaml")]).runs
    assert spelled.hash == plain.hash  # text_field: text is the default, spelt out
