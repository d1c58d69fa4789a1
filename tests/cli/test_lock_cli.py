"""End-to-end: `runix lock`, and `runix hash` refusing a missing or stale lock."""

from __future__ import annotations

import json
import pathlib

import pytest

from tests.conftest import run_cli
from tests.tokenizer_fixture import write_tokenizer_json


SPEC = """\
runs:
  - name: base
    model: {{preset: tiny}}
    batch: {{sequences: 8, sequence_length: 128}}
    steps: 10
    data:
      tokenizer: "{data}/tokenizer.json"
      sources:
        code: {{uri: "{data}/code", role: code, share: 0.5, max_repeats: 100}}
        web: {{uri: "gs://runix-test-bucket/web", role: text, share: 0.5, declared_tokens: 1B}}
    schedule:
      phases:
        - {{kind: warmup, length: 2, peak: 1e-3}}
        - {{kind: cosine, floor: 1e-4}}
  - name: child
    extends: base
    steps: 5
    init: {{kind: parent, run: base}}
"""


@pytest.fixture
def project(tmp_path):
    """A project (pyproject.toml marks its root) with local data, a tokenizer and one spec set."""
    (tmp_path / "pyproject.toml").write_text("")
    data = tmp_path / "data"
    (data / "code").mkdir(parents=True)
    # `runix lock` counts the tokens of this source (it tokenizes it): enough for the budget at max_repeats
    (data / "code" / "a.py").write_text("print('a')\n" * 100)
    (data / "code" / "b.py").write_text("print('b')\n" * 100)
    write_tokenizer_json(data / "tokenizer.json")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "runs.yaml").write_text(SPEC.format(data=data))
    return tmp_path


@pytest.fixture
def lock(cli):
    return lambda project, *extra: cli("lock", "specs", "--offline", *extra, cwd=project)


@pytest.fixture
def hashes(cli):
    def call(project, *extra):
        result = cli("hash", "specs", *extra, cwd=project)
        assert result.returncode == 0, result.stderr
        return dict(reversed(line.split("  ")) for line in result.stdout.splitlines())

    return call


def parse_hashes(stdout: str) -> dict[str, str]:
    return dict(reversed(line.split("  ")) for line in stdout.splitlines())


def test_lock_writes_the_lockfile_and_reports_unresolved_inputs(project):
    result = run_cli("lock", "specs", "--offline", cwd=project)  # the real entry point
    assert result.returncode == 0, result.stderr
    path = project / "lockfiles" / "specs.lock.json"
    data = json.loads(path.read_text())
    assert data["spec_set"]["paths"] == ["specs"]
    code = data["sources"][f"{project}/data/code"]
    assert set(code["locked"]["files"]) == {"a.py", "b.py"}
    web = data["sources"]["gs://runix-test-bucket/web"]
    assert web["locked"] is None and "--offline" in web["unresolved"]
    assert "unresolved: gs://runix-test-bucket/web" in result.stdout
    result = run_cli("hash", "specs", cwd=project)
    assert result.returncode == 0 and set(parse_hashes(result.stdout)) == {"base", "child"}


def test_hash_without_a_lock_exits_2_and_says_how_to_lock(project):
    result = run_cli("hash", "specs", cwd=project)
    assert result.returncode == 2
    assert "no lockfile" in result.stderr and "runix lock specs" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "lockfiles").exists()


def test_a_spec_edit_needs_no_relock_and_a_new_input_names_itself(project, cli, lock, hashes):
    assert lock(project).returncode == 0
    before = hashes(project)
    spec = project / "specs" / "runs.yaml"
    text = spec.read_text()
    spec.write_text(text.replace("peak: 1e-3", "peak: 2e-3"))
    lockfile = (project / "lockfiles" / "specs.lock.json").read_bytes()
    after = hashes(project)  # no relock: the lock pins inputs, and none changed
    assert after["base"] != before["base"] and after["child"] != before["child"]
    assert (project / "lockfiles" / "specs.lock.json").read_bytes() == lockfile
    assert lock(project).returncode == 0
    assert hashes(project) == after  # relocking unchanged inputs changes no hash
    spec.write_text(text.replace(f"{project}/data/code", f"{project}/data/other"))
    result = cli("hash", "specs", cwd=project)
    assert result.returncode == 2 and result.stdout == ""
    line, summary = result.stderr.strip().splitlines()
    assert summary == "1 problem; nothing was written."
    assert f"runs[base].data.sources.code.uri: source code {project}/data/other (and 1 more run) is not in" in line
    assert "add it with `runix lock specs`" in line and "runs.yaml:" in line


def test_data_drift_is_found_by_check_not_by_hash(project, cli, lock, hashes):
    assert lock(project).returncode == 0
    before = hashes(project)
    assert lock(project, "--check").returncode == 0
    (project / "data" / "code" / "b.py").write_text("print('B')\n")
    assert hashes(project) == before  # hashing is hermetic: it reads the lock, not the data
    result = lock(project, "--check")
    assert result.returncode == 1
    assert f"drift: source {project}/data/code:" in result.stdout and "files changed: b.py" in result.stdout
    assert "runix lock specs" in result.stdout
    assert lock(project).returncode == 0
    assert hashes(project) != before
    assert lock(project, "--check").returncode == 0


def test_check_needs_every_input_locked_but_not_the_same_runs(project, cli, lock, hashes):
    result = lock(project, "--check")
    assert result.returncode == 2 and "no lockfile to check" in result.stderr
    assert lock(project).returncode == 0
    spec = project / "specs" / "runs.yaml"
    text = spec.read_text()
    spec.write_text(text.replace("steps: 5", "steps: 6"))
    assert lock(project, "--check").returncode == 0  # a spec edit is not drift
    spec.write_text(text.replace(f"{project}/data/code", f"{project}/data/other"))
    result = lock(project, "--check")
    assert result.returncode == 2 and f"source code {project}/data/other (and 1 more run) is not in" in result.stderr


@pytest.mark.parametrize("content", [b"{truncated", b'{"runix_lock": 2}', b"\x00\x01"])
def test_a_corrupt_lockfile_is_never_overwritten(project, content, cli, lock, hashes):
    path = project / "lockfiles" / "specs.lock.json"
    path.parent.mkdir()
    path.write_bytes(content)
    for result in (cli("hash", "specs", cwd=project), lock(project)):
        assert result.returncode == 2, result.stdout
        assert "corrupt lockfile" in result.stderr and str(path) in result.stderr
        assert "Traceback" not in result.stderr
    assert path.read_bytes() == content
    assert lock(project, "--force").returncode == 0
    assert hashes(project)


def test_a_lockfile_of_the_older_format_is_named_and_rewritten_by_lock(project, cli, lock, hashes):
    assert lock(project).returncode == 0
    current = hashes(project)
    path = project / "lockfiles" / "specs.lock.json"
    path.write_text(json.dumps({"runix_lock": 1, "spec_set": {"paths": ["specs"], "runs": {}}}))
    result = cli("hash", "specs", cwd=project)
    assert result.returncode == 2 and "lockfile format 1, this runix reads 2; rewrite it with `runix lock`" in result.stderr
    assert lock(project).returncode == 0  # no --force needed: format 1 pinned runs, nothing in it is kept
    assert json.loads(path.read_text())["runix_lock"] == 2
    assert hashes(project) == current


def test_a_lockfile_of_another_spec_set_is_never_overwritten(project, cli, lock, hashes):
    other = project / "other"
    other.mkdir()
    (other / "x.yaml").write_text((project / "specs" / "runs.yaml").read_text().replace("name: base", "name: o-base")
                                  .replace("run: base", "run: o-base").replace("extends: base", "extends: o-base"))
    assert cli("lock", "other", "--offline", cwd=project).returncode == 0
    path = project / "lockfiles" / "other.lock.json"
    before = path.read_bytes()
    result = lock(project, "--lockfile", str(path))
    assert result.returncode == 2
    assert "belongs to another spec set (other), not specs" in result.stderr
    assert path.read_bytes() == before
    # It pins the same inputs, so it can hash this spec set (a lock pins inputs, not runs).
    assert cli("hash", "specs", "--lockfile", str(path), cwd=project).returncode == 0
