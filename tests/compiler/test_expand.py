import pytest

from compiler.expand import deep_merge, expand_documents
from compiler.problems import SpecError
from compiler.yaml_source import parse_document


def expand(text):
    return {run.name: run for run in expand_documents([parse_document(text, "s.yaml")])}


def test_deep_merge_mappings_merge_and_other_values_replace():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    assert deep_merge(base, {"a": {"y": [3]}, "c": 2}) == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}


def test_deep_merge_replaces_a_variant_of_another_kind():
    base = {"init": {"kind": "scratch", "seed": 3}}
    assert deep_merge(base, {"init": {"kind": "parent", "run": "p"}}) == {"init": {"kind": "parent", "run": "p"}}
    assert deep_merge(base, {"init": {"seed": 4}}) == {"init": {"kind": "scratch", "seed": 4}}


def test_extends_and_abstract():
    runs = expand("""
runs:
  - {name: base, abstract: true, steps: 10, batch: {sequences: 2, sequence_length: 4}}
  - {name: a, extends: base, steps: 20}
  - {name: b, extends: a, batch: {sequences: 4}}
""")
    assert set(runs) == {"a", "b"}
    assert runs["b"].data == {"name": "b", "steps": 20, "batch": {"sequences": 4, "sequence_length": 4}}
    assert runs["b"].location(("batch", "sequences")).line == 5
    assert runs["b"].location(("steps",)).line == 4


def test_matrix_expands_with_placeholders():
    runs = expand("""
runs:
  - name: r-{size}-{mix}
    description: size {size}
    init: {kind: parent, run: "p-{size}"}
    matrix:
      size: {s: {steps: 1}, m: {steps: 2}}
      mix: {a: {x: 1}, b: {x: 2}}
""")
    assert sorted(runs) == ["r-m-a", "r-m-b", "r-s-a", "r-s-b"]
    assert runs["r-m-b"].data["steps"] == 2 and runs["r-m-b"].data["x"] == 2
    assert runs["r-s-a"].data["init"]["run"] == "p-s"
    assert runs["r-s-a"].data["description"] == "size s"


@pytest.mark.parametrize("text, message", [
    ("runs:\n  - {name: a, extends: b}\n  - {name: b, extends: a}\n", "extends cycle"),
    ("runs:\n  - {name: a, extends: bse}\n  - {name: base}\n", "did you mean 'base'"),
    ("runs:\n  - {name: a}\n  - {name: a}\n", "duplicate run name"),
    ("runs:\n  - {name: r, matrix: {m: {x: {}}}}\n", "must contain {m}"),
    ("runs:\n  - {name: \"r-{m}\", matrix: {m: [1, 2]}}\n", "labels to patches"),
    ("runs: []\n", "non-empty list"),
    ("other: 1\n", "a mapping with a `runs:` list"),
    ("runs:\n  - {steps: 1}\n", "needs a `name`"),
])
def test_authoring_errors(text, message):
    with pytest.raises(SpecError) as info:
        expand(text)
    assert any(message in p.message for p in info.value.problems), info.value


@pytest.mark.parametrize("text, cycle, field", [
    ("runs:\n  - {name: a, extends: b}\n  - {name: b, extends: a}\n", "a → b → a", "runs[b].extends"),
    ("runs:\n  - {name: a, extends: a}\n", "a → a", "runs[a].extends"),
    ("runs:\n  - {name: c, extends: a}\n  - {name: a, extends: b}\n  - {name: b, extends: d}\n  - {name: d, extends: a}\n",
     "a → b → d → a", "runs[d].extends"),
])
def test_an_extends_cycle_is_named_once_in_order(text, cycle, field):
    with pytest.raises(SpecError) as info:
        expand(text)
    [problem] = info.value.problems  # one cycle, one problem (c, which only leads into it, is not part of it)
    assert problem.message == f"extends cycle: {cycle}" and problem.path == field


def test_a_long_extends_chain_costs_no_recursion():
    names = [f"r{i}" for i in range(1100)]  # past Python's default recursion limit (1000)
    text = "runs:\n  - {name: r0, steps: 1}\n" + "".join(f"  - {{name: {b}, extends: {a}}}\n" for a, b in zip(names, names[1:]))
    runs = expand(text)
    assert len(runs) == 1100 and runs["r1099"].data["steps"] == 1
