"""End-to-end: the real `runix` CLI on the shipped and broken specs."""

from __future__ import annotations

import json
import os
import pathlib

import jsonschema
import pytest

from compiler.specset import spec_files
from compiler.yaml_source import parse_document
from tests.conftest import MINIMAL_RUN, REPO, run_cli


def tree_state(root: pathlib.Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_validate_and_hash_the_tiny_specs():
    result = run_cli("validate", "specs/tiny")
    assert result.returncode == 0, result.stderr
    assert "6 runs valid" in result.stdout
    result = run_cli("hash", "specs/tiny")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 6
    names = [line.split("  ")[1] for line in lines]
    assert names.index("tiny-code") < names.index("tiny-code-text") < names.index("tiny-cooldown")
    assert all(len(line.split("  ")[0]) == 64 for line in lines)


def test_hash_is_stable_across_processes_and_paths(tmp_path):
    first = run_cli("hash", "specs/tiny").stdout
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    for file in (REPO / "specs" / "tiny").glob("*.yaml"):
        (copy / ("renamed-" + file.name)).write_text(file.read_text())
    assert run_cli("hash", str(copy)).stdout == first


def test_a_moved_or_copied_checkout_hashes_the_same_runs(tmp_path):
    """A lock belongs to the project, not to a path: the same relative layout elsewhere gives the same hashes."""
    import shutil

    here = run_cli("hash", "specs/tiny")
    assert here.returncode == 0, here.stderr
    for place in (tmp_path / "moved", tmp_path / "deeper" / "copy of runix"):
        (place / "specs").mkdir(parents=True)
        shutil.copytree(REPO / "specs" / "tiny", place / "specs" / "tiny")
        (place / "lockfiles").mkdir()
        shutil.copy(REPO / "lockfiles" / "tiny.lock.json", place / "lockfiles")
        shutil.copy(REPO / "pyproject.toml", place)
        assert run_cli("hash", "specs/tiny", cwd=place).stdout == here.stdout
        assert run_cli("hash", str(place / "specs" / "tiny"), cwd=tmp_path).stdout == here.stdout  # from outside it
        assert run_cli("hash", "tiny", cwd=place / "specs").stdout == here.stdout  # from a subfolder
        lock = json.loads((place / "lockfiles" / "tiny.lock.json").read_text())
        assert lock["spec_set"]["paths"] == ["specs/tiny"]  # recorded relative to the project root


@pytest.fixture(scope="module")
def schema():
    result = run_cli("schema")
    assert result.returncode == 0
    return json.loads(result.stdout)


SHIPPED = [p for p in spec_files([REPO / "specs"])[0]]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_schema_accepts_every_shipped_spec(path, schema):
    # YAML 1.2 reading (as editors' YAML servers do): 1e-6 is a float, not a string.
    jsonschema.validate(parse_document(path.read_bytes(), str(path)).data, schema)


def test_schema_rejects_a_wrong_typed_spec(schema):
    import yaml

    bad = yaml.safe_load(MINIMAL_RUN.replace("sequences: 8", "sequences: eight"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(MINIMAL_RUN.replace("steps: 10", "stepz: 10")), schema)


BAD_INPUTS = {
    "malformed.yaml": "runs: [\n",
    "wrong-type.yaml": MINIMAL_RUN.replace("sequences: 8", "sequences: eight"),
    "unknown-key.yaml": MINIMAL_RUN.replace("steps: 10", "stepz: 10"),
    "missing-field.yaml": MINIMAL_RUN.replace("    batch: {sequences: 8, sequence_length: 128}\n", ""),
    "negative.yaml": MINIMAL_RUN.replace("steps: 10", "steps: -10"),
    "nan.yaml": MINIMAL_RUN.replace("peak: 1e-3", "peak: .nan"),
    "inf.yaml": MINIMAL_RUN.replace("peak: 1e-3", "peak: .inf"),
    "duplicate.yaml": MINIMAL_RUN + MINIMAL_RUN.replace("runs:\n", ""),
    "cycle.yaml": MINIMAL_RUN + "  - {name: a, extends: base, init: {kind: parent, run: b}}\n  - {name: b, extends: base, init: {kind: parent, run: a}}\n",
    "missing-parent.yaml": MINIMAL_RUN + "  - {name: a, extends: base, init: {kind: parent, run: nope}}\n",
    "bomb.yaml": "a: &a [" + ",".join(['"x"'] * 50) + "]\n" + "".join(
        f"{n}: &{n} [" + ",".join([f"*{p}"] * 50) + "]\n" for p, n in zip("abcd", "bcde")),
    "huge.yaml": "runs: []\n" + "#" * (5 * 1024 * 1024),
    "binary.yaml": b"\x7fELF\x00\x00\x01\x02" * 100,
    "empty.yaml": "",
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
@pytest.mark.parametrize("command", ["validate", "hash"])
def test_bad_input_exits_2_with_file_line_and_no_traceback(tmp_path, name, command):
    path = tmp_path / name
    content = BAD_INPUTS[name]
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = tree_state(tmp_path)
    result = run_cli(command, str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert f"{path}" in result.stderr and "error" in result.stderr
    assert "nothing was written" in result.stderr
    assert tree_state(tmp_path) == before


def test_every_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(MINIMAL_RUN.replace("sequences: 8", "sequences: 0").replace("steps: 10", "stepz: 10\n    optimizer: {b1: 2}"))
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    for field in ("runs[base].batch.sequences", "runs[base].stepz", "runs[base].optimizer.b1"):
        assert field in result.stderr
    assert f"{path}:4" in result.stderr  # the batch line


def test_a_directory_named_like_a_spec_is_an_error(tmp_path):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "trap.yaml").mkdir()
    (tmp_path / "set" / "ok.yaml").write_text(MINIMAL_RUN)
    result = run_cli("validate", str(tmp_path / "set"))
    assert result.returncode == 2 and "is a directory" in result.stderr


def test_bad_arguments_exit_2():
    assert run_cli("validate").returncode == 2
    assert run_cli("frobnicate").returncode == 2


@pytest.mark.parametrize("command", ["validate", "hash"])
def test_validate_and_hash_never_import_jax(command):
    probe = (
        "import sys, runpy; sys.argv = ['runix', %r, 'specs/tiny'];"
        "from compiler.cli import main; code = main();"
        "heavy = [m for m in ('jax', 'jaxlib', 'flax', 'optax', 'grain', 'tensorflow_datasets', 'xmanager') if m in sys.modules];"
        "print('HEAVY', heavy); sys.exit(code)" % command
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_a_deeply_nested_file_exits_2_with_one_line_and_no_traceback(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("runs: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")
    result = run_cli("validate", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    assert result.stderr.splitlines()[0] == (f"error: {path}:1: nested deeper than 64 levels of mappings and lists "
                                             "(the limit for spec files); flatten it")
