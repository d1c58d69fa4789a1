"""End-to-end: `runix store ls|verify|gc` on a local store in a temporary project."""

from __future__ import annotations

import pathlib

import pytest

from compiler.lock import load_locked_spec_set
from compiler.store import Store
from tests.tokenizer_fixture import write_tokenizer_json
from tests.conftest import run_cli


SPEC = """\
runs:
  - name: base
    model: {{preset: tiny}}
    batch: {{sequences: 8, sequence_length: 128}}
    steps: 10
    data:
      tokenizer: "{data}/tokenizer.json"
      sources:
        code: {{uri: "{data}/code.txt", role: code, share: 1.0, max_repeats: 100}}
    schedule:
      phases:
        - {{kind: warmup, length: 2, peak: 1e-3}}
        - {{kind: cosine, floor: 1e-4}}
  - name: child
    extends: base
    steps: 5
    init: {{kind: parent, run: base}}
  - name: other
    extends: base
    steps: 20
"""


@pytest.fixture
def project(tmp_path, cli):
    """A locked project whose three runs are built in its default store (.runix/store)."""
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "data").mkdir()
    # `runix lock` tokenizes this source (its count, its shard in .runix/store/.shards): enough for the budgets
    (tmp_path / "data" / "code.txt").write_text("def f(): pass\n" * 100)
    write_tokenizer_json(tmp_path / "data" / "tokenizer.json")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "runs.yaml").write_text(SPEC.format(data=tmp_path / "data"))
    assert cli("lock", "specs", cwd=tmp_path).returncode == 0
    locked = load_locked_spec_set([tmp_path / "specs"])
    store = Store(str(tmp_path / ".runix" / "store"))
    for run in locked.spec_set.runs:
        build = store.begin_build(run, locked.lock.entries_for(run))
        (build.path / "digest.json").write_text('{"loss": [1.0]}')
        build.finish()
    return tmp_path, {run.name: run.hash for run in locked.spec_set.runs}, store


def test_ls_lists_built_entries_in_the_default_store(project):
    root, hashes, _ = project
    result = run_cli("store", "ls", cwd=root)
    assert result.returncode == 0, result.stderr
    for name, run_hash in hashes.items():
        assert name in result.stdout and run_hash[:16] in result.stdout
    assert "3 built" in result.stdout


def test_verify_ok_tampered_and_unknown(project, cli):
    root, hashes, store = project
    result = cli("store", "verify", hashes["base"][:12], cwd=root)
    assert result.returncode == 0 and "ok" in result.stdout
    digest = pathlib.Path(store.entry(hashes["base"])) / "digest.json"
    digest.write_text('{"loss": [2.0]}')
    result = cli("store", "verify", hashes["base"], cwd=root)
    assert result.returncode == 1
    assert "TAMPERED" in result.stdout and "digest.json: content differs" in result.stdout
    result = cli("store", "verify", "--all", cwd=root)
    assert result.returncode == 1 and "1 of 3 entries fail" in result.stdout
    for bad, message in (("0" * 64, "not in the store"), ("../../etc", "not a run hash")):
        result = cli("store", "verify", bad, cwd=root)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_explicit_store_url(project, tmp_path_factory, cli):
    root, hashes, _ = project
    empty = tmp_path_factory.mktemp("empty")
    result = cli("store", "ls", "--store", f"file://{empty}", cwd=root)
    assert result.returncode == 0 and "0 built" in result.stdout
    result = cli("store", "verify", hashes["base"], "--store", str(empty), cwd=root)
    assert result.returncode == 2 and "not in the store" in result.stderr


def test_gc_keeps_what_the_spec_set_reaches(project, cli):
    root, hashes, store = project
    spec = root / "specs" / "runs.yaml"
    spec.write_text(spec.read_text().replace("  - name: other\n    extends: base\n    steps: 20\n", ""))
    result = cli("store", "gc", "specs", "--dry-run", cwd=root)  # removing a run needs no relock
    assert result.returncode == 0 and "would remove" in result.stdout and "other" in result.stdout
    assert len(store.ls()) == 3
    result = cli("store", "gc", "specs", cwd=root)
    assert result.returncode == 0, result.stderr
    assert f"kept {hashes['child'][:16]}-child (built): in a kept spec set" in result.stdout  # says why
    assert sorted(e.name for e in store.ls()) == ["base", "child"]
    assert store.verify(hashes["child"]) == []
    from compiler.store.shards import published_keys

    assert len(published_keys(store)) == 1  # the source's token shard is not a run: gc leaves it


def test_gc_keeps_a_parent_named_by_hash(project, cli):
    root, hashes, store = project
    (root / "specs2").mkdir()
    (root / "specs2" / "x.yaml").write_text(
        (root / "specs" / "runs.yaml").read_text().split("  - name: child")[0].replace("name: base", "name: grandchild")
        + f"    init: {{kind: parent, hash: {hashes['child']}}}\n")
    assert cli("lock", "specs2", cwd=root).returncode == 0
    result = cli("store", "gc", "specs2", cwd=root)
    assert result.returncode == 0, result.stderr
    # child is named by hash; base is child's parent (read from child's spec.json); other is unreachable.
    assert sorted(e.name for e in store.ls()) == ["base", "child"]
