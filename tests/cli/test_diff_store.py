"""`runix diff` on stored runs and against an older lockfile: why a hash changed, up the initialization chain."""

from __future__ import annotations

import shutil

import pytest

from compiler.lock import load_locked_spec_set
from compiler.store import Store

SPEC = """\
runs:
  - name: base
    model: {{preset: tiny}}
    batch: {{sequences: 8, sequence_length: 128}}
    steps: 10
    data:
      tokenizer: "{data}/tokenizer.json"
      sources:
        code: {{uri: "{data}/code.txt", role: code, share: 1.0}}
    schedule:
      phases:
        - {{kind: warmup, length: 2, peak: 1e-3}}
        - {{kind: cosine, floor: 1e-4}}
  - name: child
    extends: base
    steps: 5
    init: {{kind: parent, run: base}}
  - name: grandchild
    extends: base
    steps: 4
    init: {{kind: parent, run: child}}
"""


def build_all(root, store):
    """Publish every run of the project's spec set in the store (the store's own build protocol; no training)."""
    locked = load_locked_spec_set([root / "specs"])
    for run in locked.spec_set.runs:
        build = store.begin_build(run, locked.lock.entries_for(run))
        if build is not None:
            (build.path / "digest.json").write_text('{"loss": [1.0]}')
            build.finish()
    return {run.name: run for run in locked.spec_set.runs}, locked.lock


@pytest.fixture
def history(tmp_path, cli):
    """Runs built twice: before and after the code data changed (relocked); the older lockfile kept aside."""
    (tmp_path / "pyproject.toml").write_text("")
    data = tmp_path / "data"
    data.mkdir()
    (data / "code.txt").write_text("def f(): pass\n")
    (data / "tokenizer.json").write_text("{}")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "runs.yaml").write_text(SPEC.format(data=data))
    store = Store(str(tmp_path / ".runix" / "store"))
    assert cli("lock", "specs", "--offline", cwd=tmp_path).returncode == 0
    old, old_lock = build_all(tmp_path, store)
    shutil.copy(tmp_path / "lockfiles" / "specs.lock.json", tmp_path / "old.lock.json")
    (data / "code.txt").write_text("def g(): return 1\n")
    assert cli("lock", "specs", "--offline", cwd=tmp_path).returncode == 0
    new, new_lock = build_all(tmp_path, store)
    return tmp_path, old, new, old_lock, new_lock


def digests(old_lock, new_lock, uri):
    return old_lock.sources[uri].digest[:12], new_lock.sources[uri].digest[:12]


def test_two_stored_runs_are_explained_up_their_chains(history, cli):
    root, old, new, old_lock, new_lock = history
    before, after = digests(old_lock, new_lock, f"{root}/data/code.txt")
    result = cli("diff", "--store", str(root / ".runix" / "store"), old["grandchild"].hash[:10], new["grandchild"].hash, cwd=root)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "hash changed by: init.parent, inputs.sources.code.digest" in out
    assert f"parent child: inputs.sources.code.digest {before} → {after}; its own parent's hash differs" in out
    assert f"    parent base: inputs.sources.code.digest {before} → {after}" in out  # recursed one level further
    assert "in the store" in out


def test_a_stored_run_against_todays_spec(history, cli):
    root, old, new, old_lock, new_lock = history
    before, after = digests(old_lock, new_lock, f"{root}/data/code.txt")
    result = cli("diff", "--store", str(root / ".runix" / "store"), old["child"].hash, "specs:child", cwd=root)
    assert result.returncode == 0, result.stderr
    assert f"parent base: inputs.sources.code.digest {before} → {after}" in result.stdout
    same = cli("diff", "--store", str(root / ".runix" / "store"), new["child"].hash, "specs:child", cwd=root)
    assert same.returncode == 0 and "same hash: they train the same bits" in same.stdout


def test_a_spec_set_against_an_older_lockfile(history, cli):
    root, old, new, old_lock, new_lock = history
    before, after = digests(old_lock, new_lock, f"{root}/data/code.txt")
    result = cli("diff", "old.lock.json", "specs", cwd=root)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "0 unchanged, 3 changed" in out  # every run reads the changed source itself
    assert f"changed: base  {old['base'].short_hash} → {new['base'].short_hash}" in out
    assert "inputs.sources.code.digest" in out and before in out and after in out
    one = cli("diff", "old.lock.json", "specs:base", cwd=root)
    assert one.returncode == 0 and f"A  {old['base'].short_hash}  base" in one.stdout


def test_bad_store_operands_exit_2(history, cli):
    root, *_ = history
    unknown = cli("diff", "--store", str(root / ".runix" / "store"), "abcdef12", "specs:base", cwd=root)
    assert unknown.returncode == 2 and "not in the store" in unknown.stderr and "Traceback" not in unknown.stderr
    lone = cli("diff", "old.lock.json", "nothing-here", cwd=root)
    assert lone.returncode == 2 and "a lockfile operand is compared with a spec set" in lone.stderr
