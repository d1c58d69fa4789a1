"""`runix diff`: which fields differ, which changed the hash, and which descendants re-hash."""

from __future__ import annotations

import shutil

import pytest

from compiler.commands.diff import HASHED, NOT_HASHED, VIA_PARENT, compare_sets, field_changes
from compiler.specset import load_spec_set
from tests.conftest import REPO, run_cli

TINY = REPO / "specs" / "tiny"


@pytest.fixture
def versions(tmp_path):
    """Two copies of specs/tiny, `old` and `new`, and an editor for `new`'s chain.yaml."""
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(TINY, old)
    shutil.copytree(TINY, new)

    def edit(before: str, after: str) -> None:
        path = new / "chain.yaml"
        text = path.read_text()
        assert before in text
        path.write_text(text.replace(before, after, 1))

    return old, new, edit


def by_name(path):
    return load_spec_set([path]).by_name()


def test_a_description_change_does_not_change_the_hash(versions):
    old, new, edit = versions
    edit("description: Generation 1 — a code LM", "description: Generation 1 (reworded) — a code LM")
    a, b = by_name(old)["tiny-code"], by_name(new)["tiny-code"]
    assert a.hash == b.hash
    (change,) = field_changes(a, b)
    assert change.path == "description" and change.effect == NOT_HASHED
    kinds = {c.name: c.kind for c in compare_sets(load_spec_set([old]), load_spec_set([new]))}
    assert kinds["tiny-code"] == "metadata"
    assert {kinds[n] for n in kinds if n != "tiny-code"} == {"unchanged"}


def test_an_lr_change_changes_the_hash_and_rehashes_descendants(versions):
    old, new, edit = versions
    edit("{kind: warmup, length: 10, peak: 3e-3}", "{kind: warmup, length: 10, peak: 4e-3}")
    a, b = by_name(old)["tiny-code"], by_name(new)["tiny-code"]
    assert a.hash != b.hash
    changes = {c.path: c for c in field_changes(a, b)}
    assert changes["schedule.phases[0].peak"].effect == HASHED
    assert (changes["schedule.phases[0].peak"].a, changes["schedule.phases[0].peak"].b) == (0.003, 0.004)
    # the cosine phase starts where the warmup ended, so its resolved start moves too
    assert changes["schedule.phases[1].start"].effect == HASHED
    assert set(changes) == {"schedule.phases[0].peak", "schedule.phases[1].start"}
    comparisons = {c.name: c for c in compare_sets(load_spec_set([old]), load_spec_set([new]))}
    assert comparisons["tiny-code"].kind == "changed"
    assert comparisons["tiny-code-text"].kind == comparisons["tiny-cooldown"].kind == "via-parent"
    assert [c.path for c in comparisons["tiny-code-text"].changes] == ["init.parent"]
    assert comparisons["tiny-sweep-code50"].kind == "unchanged"


def test_parent_named_by_run_is_hashed_as_its_hash():
    runs = by_name(TINY)
    changes = {c.path: c for c in field_changes(runs["tiny-code"], runs["tiny-code-text"])}
    assert changes["name"].effect == NOT_HASHED
    assert changes["init.run"].effect == VIA_PARENT
    assert changes["init.parent"].effect == HASHED and changes["init.parent"].b == runs["tiny-code"].hash
    assert changes["steps"].effect == HASHED
    assert "init.hash" not in changes  # left out vs null is no difference


def test_added_and_removed_runs(versions, tmp_path):
    old, new, _ = versions
    (new / "sweep.yaml").unlink()
    kinds = {c.name: c.kind for c in compare_sets(load_spec_set([new]), load_spec_set([old]))}
    assert kinds["tiny-sweep-code0"] == "added"
    kinds = {c.name: c.kind for c in compare_sets(load_spec_set([old]), load_spec_set([new]))}
    assert kinds["tiny-sweep-code0"] == "removed"


# --------------------------------------------------------------------------- the real CLI


def test_cli_two_runs_of_one_set():
    result = run_cli("diff", "specs/tiny:tiny-code", "specs/tiny:tiny-code-text")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "hash changed by:" in out and "schedule.phases[0].peak" in out
    assert "not hashed" in out and "description" in out
    assert "descendants of tiny-code-text" in out and "tiny-cooldown" in out


def test_cli_two_versions_of_a_set(versions):
    old, new, edit = versions
    edit("{kind: warmup, length: 10, peak: 3e-3}", "{kind: warmup, length: 10, peak: 4e-3}")
    result = run_cli("diff", old, new)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "3 unchanged, 1 changed, 2 re-hashed through a parent" in out
    assert "changed: tiny-code" in out and "schedule.phases[0].peak" in out
    assert "re-hashed through its parent: tiny-code-text" in out
    assert "re-hashed through its parent: tiny-cooldown" in out


def test_cli_names_and_hashes_with_in():
    code = by_name(TINY)["tiny-code"]
    result = run_cli("diff", code.hash[:10], "tiny-code", "--in", "specs/tiny")
    assert result.returncode == 0, result.stderr
    assert "same hash" in result.stdout and "no field differs" in result.stdout


def test_cli_bad_operands_exit_2():
    missing = run_cli("diff", "specs/tiny:no-such-run", "specs/tiny:tiny-code")
    assert missing.returncode == 2 and "no run named 'no-such-run'" in missing.stderr
    bare = run_cli("diff", "tiny-code", "tiny-code-text")
    assert bare.returncode == 2 and "--in" in bare.stderr
    assert "Traceback" not in missing.stderr + bare.stderr
