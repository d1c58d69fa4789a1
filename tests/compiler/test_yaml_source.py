import pytest

from compiler.problems import Location, SpecError
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


DEEP = [
    ("runs: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", 1),  # flow mappings, as the issue found them
    ("x: " + "[" * 100_000 + "]" * 100_000 + "\n", 1),  # deep enough to crash libyaml's recursive composer
    ("runs:\n" + "".join("  " * i + "- \n" for i in range(1, 80)) + "  " * 80 + "x\n", 65),  # block style
    ("x: " + "[" * 70 + "]" * 70 + "\n", 1),  # just past the limit, below the pre-scan's threshold
    ('{"a": ' * 3000 + "1" + "}" * 3000, 1),  # JSON
]


@pytest.mark.parametrize("text, line", DEEP)
def test_nesting_past_the_limit_is_one_problem_naming_it_and_the_line(text, line):
    from compiler.yaml_source import MAX_DEPTH

    (problem,) = problems_of(text)
    assert problem.message == (f"nested deeper than {MAX_DEPTH} levels of mappings and lists (the limit for spec "
                               f"files); flatten it")
    assert problem.location == Location("f.yaml", line)


def test_nesting_up_to_the_limit_parses():
    from compiler.yaml_source import MAX_DEPTH

    document = parse_document("x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n", "f.yaml")
    value, depth = document.data["x"], 2
    while value:
        value, depth = value[0], depth + 1
    assert depth == MAX_DEPTH
