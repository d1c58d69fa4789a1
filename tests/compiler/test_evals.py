"""The `evals` section: never in a run's hash, its own derivation hash, and its checks with file:line:field path."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.evals import derivations, eval_steps, kept_checkpoints
from compiler.eval_spec import EvalsSpec
from compiler.problems import SpecError
from compiler.specset import load_spec_set
from tests.conftest import MINIMAL_RUN

EVALS = """\
    checkpoint: {every: 5, keep: 2}
    evals:
      every: 5
      sets:
        code: {kind: heldout, uri: "builtin://code"}
        text: {kind: heldout, uri: "builtin://text", max_bytes: 4K}
"""


def with_evals(text: str = EVALS) -> str:
    return MINIMAL_RUN.replace("    steps: 10\n", "    steps: 10\n" + text)


def problems(write_spec, text):
    with pytest.raises(SpecError) as info:
        load_spec_set([write_spec(text)])
    return info.value.problems


def test_evals_never_change_the_run_hash(write_spec):
    (plain,) = load_spec_set([write_spec(with_evals("    checkpoint: {every: 5, keep: 2}\n"), "a.yaml")]).runs
    (judged,) = load_spec_set([write_spec(with_evals(), "b.yaml")]).runs
    assert judged.spec.evals.sets and plain.hash == judged.hash


@settings(max_examples=40, deadline=None)
@given(every=st.sampled_from([None, 1, 2, 5, 10]), max_bytes=st.integers(1, 1 << 20),
       names=st.lists(st.sampled_from(["code", "text", "markup", "x"]), unique=True, max_size=4))
def test_no_evals_setting_enters_the_run_hash(tmp_path_factory, every, max_bytes, names):
    folder = tmp_path_factory.mktemp("h")
    base = folder / "base.yaml"
    base.write_text(MINIMAL_RUN)
    sets = "".join(f'        {n}: {{kind: heldout, uri: "builtin://code"}}\n' for n in names)
    judged = folder / "judged.yaml"
    judged.write_text(with_evals(f"    checkpoint: {{every: 1, keep: 20}}\n    evals:\n      every: {every or 'null'}\n"
                                 f"      max_bytes: {max_bytes}\n      sets:\n{sets or '        {}'}\n"
                                 if names else "    evals: {every: 3}\n"))
    assert load_spec_set([base]).runs[0].hash == load_spec_set([judged]).runs[0].hash


def test_extends_shares_eval_sets_and_a_child_adds_one(write_spec):
    text = with_evals() + """\
  - name: child
    extends: base
    evals:
      sets:
        markup: {kind: heldout, uri: "builtin://markup"}
"""
    runs = load_spec_set([write_spec(text)]).by_name()
    assert sorted(runs["child"].spec.evals.sets) == ["code", "markup", "text"]
    assert runs["child"].spec.evals.every == 5


def _derive(run, digests=None, tokenizer="t" * 64):
    digests = digests or {"builtin://code": "a" * 64, "builtin://text": "b" * 64}
    return derivations(run, digests.get, tokenizer)


def test_each_eval_is_a_derivation_over_run_step_set_tokenizer_and_settings(write_spec):
    (run,) = load_spec_set([write_spec(with_evals())]).runs
    found = _derive(run)
    assert [(d.set_name, d.step) for d in found] == [("code", 5), ("code", 10), ("text", 5), ("text", 10)]
    assert len({d.hash for d in found}) == 4
    code_final = next(d for d in found if d.set_name == "code" and d.step == 10)
    assert code_final.document == {
        "runix_eval": 1, "run": run.hash, "step": 10,
        "set": {"kind": "heldout", "digest": "a" * 64, "split": "heldout"},
        "tokenizer": "t" * 64, "settings": {"max_bytes": 65536, "window": 128},
    }
    assert next(d for d in found if d.set_name == "text").document["settings"]["max_bytes"] == 4096
    # Each input changes the hash; labels do not.
    other_set = _derive(run, {"builtin://code": "c" * 64, "builtin://text": "b" * 64})
    assert {d.hash for d in other_set if d.set_name == "code"}.isdisjoint({d.hash for d in found})
    assert {d.hash for d in _derive(run, tokenizer="u" * 64)}.isdisjoint({d.hash for d in found})
    other_run = dataclasses.replace(run, hash="f" * 64)
    assert {d.hash for d in _derive(other_run)}.isdisjoint({d.hash for d in found})
    renamed = load_spec_set([write_spec(with_evals().replace("code: {kind", "python: {kind"), "renamed.yaml")]).runs[0]
    assert {d.hash for d in _derive(renamed) if d.set_name == "python"} == {d.hash for d in found if d.set_name == "code"}


def test_eval_steps_and_kept_checkpoints():
    assert eval_steps(EvalsSpec(every=20), 50) == [20, 40, 50]
    assert eval_steps(EvalsSpec(), 50) == [50]
    assert kept_checkpoints(10, 2, 50) == {30, 40, 50}


def test_a_checkpoint_step_past_the_run_is_bad_input(write_spec):
    (p,) = problems(write_spec, with_evals().replace("      every: 5\n", "      every: 50\n"))
    assert p.path == "runs[base].evals.every" and p.location.line == 8
    assert "checkpoint step 50 is past the run's 10 steps" in p.message


def test_an_eval_step_that_is_not_a_kept_checkpoint_says_how_to_fix(write_spec):
    (p,) = problems(write_spec, with_evals().replace("every: 5, keep: 2", "every: 10, keep: 2"))
    assert p.path == "runs[base].evals.every" and "steps 5 are not kept" in p.message


def test_an_unknown_eval_set_is_bad_input(write_spec):
    found = problems(write_spec, with_evals().replace('"builtin://text", max_bytes', '"builtin://txt", max_bytes'))
    (p,) = found
    assert p.path == "runs[base].evals.sets.text.uri" and p.location.line == 11
    assert "unknown eval set 'builtin://txt'" in p.message and "builtin://text" in p.message


def test_an_eval_set_that_is_a_training_source_overlaps_the_training_data(write_spec):
    text = (MINIMAL_RUN.replace('code: {uri: "builtin://code", role: code, share: 1.0}',
                                'code: {uri: "builtin://code", role: code, share: 0.5}\n'
                                '        notes: {uri: "/data/notes", role: text, share: 0.5}')
            .replace("    steps: 10\n", "    steps: 10\n    evals:\n      sets:\n"
                                          '        notes: {kind: heldout, uri: "/data/notes"}\n'
                                          '        quiz: {kind: choice, uri: "/data/quiz.txt"}\n'))
    found = {p.path: p for p in problems(write_spec, text)}
    assert "overlaps the training data" in found["runs[base].evals.sets.notes.uri"].message
    assert found["runs[base].evals.sets.notes.uri"].location.line == 8
    assert "a choice set is a .jsonl file" in found["runs[base].evals.sets.quiz.uri"].message


def test_validate_cli_prints_every_eval_problem_with_file_line_and_field(write_spec, cli, tmp_path):
    path = write_spec(with_evals().replace("every: 5\n", "every: 50\n").replace('"builtin://text"', '"builtin://nope"'))
    result = cli("validate", path, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path.name}:8" in result.stderr and "runs[base].evals.every" in result.stderr
    assert "runs[base].evals.sets.text.uri" in result.stderr and "2 problems" in result.stderr


def test_an_eval_set_with_a_training_files_content_is_caught_from_the_lock(tmp_path, cli):
    from compiler.lock import load_locked_spec_set
    from compiler.evals import overlap_problems
    from tests.lockfixture import lock

    (tmp_path / "pyproject.toml").write_text("")
    for folder in ("train", "eval"):
        (tmp_path / folder).mkdir()
    (tmp_path / "train" / "a.txt").write_text("the same document\n")
    (tmp_path / "eval" / "copy.txt").write_text("the same document\n")
    (tmp_path / "eval" / "b.txt").write_text("another document\n")
    spec = tmp_path / "specs" / "s.yaml"
    spec.parent.mkdir()
    spec.write_text(MINIMAL_RUN.replace('"builtin://code"', f'"file://{tmp_path}/train"').replace(
        "    steps: 10\n", f'    steps: 10\n    evals:\n      sets:\n        notes: {{kind: heldout, uri: "file://{tmp_path}/eval"}}\n'))
    lock([spec])
    locked = load_locked_spec_set([spec])
    (problem,) = overlap_problems(locked.spec_set.runs, locked.lock)
    assert problem.path == "runs[base].evals.sets.notes.uri" and "1 of its files" in problem.message
    result = cli("eval", spec, "--store", tmp_path / "store", cwd=tmp_path)
    assert result.returncode == 2 and "overlaps the training data" in result.stderr and "Traceback" not in result.stderr


def test_cost_inputs_bound_the_forward_tokens(write_spec):
    from compiler.evals import checkpoint_loads, forward_tokens

    (run,) = load_spec_set([write_spec(with_evals())]).runs
    found = _derive(run)
    code = next(d for d in found if d.set_name == "code")
    assert forward_tokens(code) == (65536 // 128 + 1) * 128
    assert checkpoint_loads(found) == 2  # steps 5 and 10, shared by both sets
