import pytest

from compiler.problems import SpecError
from compiler.yaml_source import MAX_FILE_BYTES, parse_document


def problems_of(text, file="f.yaml"):
    with pytest.raises(SpecError) as info:
        parse_document(text, file)
    return info.value.problems


def test_values_keep_their_lines():
    doc = parse_document("a: 1\nb:\n  c: [x, {d: 2}]\n", "f.yaml")
    assert doc.data == {"a": 1, "b": {"c": ["x", {"d": 2}]}}
    assert doc.lines[("b", "c", 1, "d")] == 3
    assert doc.location(("b", "missing")).line == 2  # falls back to the parent


def test_yaml_1_2_scalars():
    doc = parse_document("lr: 3e-4\nother: 0.0003\nflag: no\nyes_: true\n", "f.yaml")
    assert doc.data["lr"] == doc.data["other"] == 0.0003
    assert doc.data["flag"] == "no"  # not the YAML 1.1 boolean
    assert doc.data["yes_"] is True


def test_duplicate_keys_are_errors_with_line():
    (problem,) = problems_of("a: 1\nb: 2\na: 3\n")
    assert problem.location.line == 3 and "duplicate key" in problem.message


def test_alias_bomb_is_refused():
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefg", "bcdefgh"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    (problem,) = problems_of("\n".join(lines) + "\n")
    assert "alias bomb" in problem.message


@pytest.mark.parametrize("text, expected", [
    ("", "empty"),
    ("   \n\n", "empty"),
    (b"\x00\x01\x02binary", "binary"),
    (b"a: \xff\xfe\n", "UTF-8"),
    ("a: [1, 2\n", "malformed YAML"),
    ("a: b: c\n", "malformed YAML"),
    ("a: !!python/object:os.system x\n", "malformed YAML"),
])
def test_bad_files_give_one_clear_problem(text, expected):
    (problem,) = problems_of(text)
    assert expected in problem.message
    assert problem.location.file == "f.yaml"


def test_huge_file_is_refused_before_parsing():
    (problem,) = problems_of("a: 1\n" + "#" * MAX_FILE_BYTES)
    assert "limited" in problem.message
