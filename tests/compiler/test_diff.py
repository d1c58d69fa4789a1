"""`runix diff`: which fields differ, which changed the hash, and which descendants re-hash."""

from __future__ import annotations

import json
import shutil

import pytest

from compiler.commands.diff import HASHED, NOT_HASHED, VIA_PARENT, compare_sets, field_changes
from compiler.lock import load_locked_spec_set
from compiler.specset import load_spec_set
from tests.conftest import REPO, run_cli
from tests.lockfixture import lock_like

TINY = REPO / "specs" / "tiny"


@pytest.fixture
def versions(tmp_path):
    """Two locked copies of specs/tiny, `old` and `new`, in a project; and an editor for `new`'s chain.yaml.

    The editor relocks `new` (with the shipped lock's inputs: the data did not change) unless told not to.
    """
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(TINY, old)
    shutil.copytree(TINY, new)
    lock_like([old])  # tmp_path/lockfiles/old.lock.json: tmp_path is now a project
    lock_like([new])

    def edit(before: str, after: str, relock: bool = True) -> None:
        path = new / "chain.yaml"
        text = path.read_text()
        assert before in text
        path.write_text(text.replace(before, after, 1))
        if relock:
            lock_like([new])

    return old, new, edit


def locked(path):
    return load_locked_spec_set([path])


def by_name(path):
    """Runs hashed as `runix hash` hashes them: with their locked inputs."""
    return locked(path).spec_set.by_name()


def changes_of(old, new, name):
    a, b = locked(old), locked(new)
    return field_changes(a.spec_set.by_name()[name], b.spec_set.by_name()[name], a.lock.inputs_for, b.lock.inputs_for)


def compare(old, new):
    a, b = locked(old), locked(new)
    return compare_sets(a.spec_set, b.spec_set, a.lock.inputs_for, b.lock.inputs_for)


def test_a_description_change_does_not_change_the_hash(versions):
    old, new, edit = versions
    edit("description: Generation 1 — a code LM", "description: Generation 1 (reworded) — a code LM")
    a, b = by_name(old)["tiny-code"], by_name(new)["tiny-code"]
    assert a.hash == b.hash
    (change,) = changes_of(old, new, "tiny-code")
    assert change.path == "description" and change.effect == NOT_HASHED
    kinds = {c.name: c.kind for c in compare(old, new)}
    assert kinds["tiny-code"] == "metadata"
    assert {kinds[n] for n in kinds if n != "tiny-code"} == {"unchanged"}


def test_an_lr_change_changes_the_hash_and_rehashes_descendants(versions):
    old, new, edit = versions
    edit("{kind: warmup, length: 10, peak: 3e-3}", "{kind: warmup, length: 10, peak: 4e-3}")
    a, b = by_name(old)["tiny-code"], by_name(new)["tiny-code"]
    assert a.hash != b.hash
    changes = {c.path: c for c in changes_of(old, new, "tiny-code")}
    assert changes["schedule.phases[0].peak"].effect == HASHED
    assert (changes["schedule.phases[0].peak"].a, changes["schedule.phases[0].peak"].b) == (0.003, 0.004)
    # the cosine phase starts where the warmup ended, so its resolved start moves too
    assert changes["schedule.phases[1].start"].effect == HASHED
    assert set(changes) == {"schedule.phases[0].peak", "schedule.phases[1].start"}
    comparisons = {c.name: c for c in compare(old, new)}
    assert comparisons["tiny-code"].kind == "changed"
    assert comparisons["tiny-code-text"].kind == comparisons["tiny-cooldown"].kind == "via-parent"
    assert [c.path for c in comparisons["tiny-code-text"].changes] == ["init.parent"]
    assert comparisons["tiny-sweep-code50"].kind == "unchanged"


def test_a_data_change_in_the_lock_changes_the_hash(versions):
    """Same specs, one source's content re-locked: the runs reading it change through `inputs`."""
    old, new, _ = versions
    path = new.parent / "lockfiles" / "new.lock.json"
    data = json.loads(path.read_text())
    before = data["sources"]["builtin://code"]["locked"]["digest"]
    data["sources"]["builtin://code"]["locked"]["digest"] = "0" * 64
    path.write_text(json.dumps(data))
    comparisons = {c.name: c for c in compare(old, new)}
    code = {c.path: c for c in comparisons["tiny-code"].changes}
    assert set(code) == {"inputs.sources.code.digest"}
    assert code["inputs.sources.code.digest"].effect == HASHED
    assert (code["inputs.sources.code.digest"].a, code["inputs.sources.code.digest"].b) == (before, "0" * 64)
    assert comparisons["tiny-code"].kind == comparisons["tiny-sweep-code50"].kind == "changed"
    # tiny-code-text reads code too: its own input changed, not only its parent
    assert comparisons["tiny-code-text"].kind == "changed"
    assert "init.parent" in {c.path for c in comparisons["tiny-code-text"].changes}
    assert comparisons["tiny-sweep-code0"].kind == "unchanged"  # a zero share drops the source
    # without locked inputs nothing differs: the lock is what tells them apart
    assert {c.kind for c in compare_sets(load_spec_set([old]), load_spec_set([new]))} == {"unchanged"}


def test_parent_named_by_run_is_hashed_as_its_hash():
    tiny = locked(TINY)
    runs = tiny.spec_set.by_name()
    changes = {c.path: c for c in field_changes(runs["tiny-code"], runs["tiny-code-text"],
                                                tiny.lock.inputs_for, tiny.lock.inputs_for)}
    assert changes["name"].effect == NOT_HASHED
    assert changes["init.run"].effect == VIA_PARENT
    assert changes["init.parent"].effect == HASHED and changes["init.parent"].b == runs["tiny-code"].hash
    assert changes["steps"].effect == HASHED
    assert "init.hash" not in changes  # left out vs null is no difference


def test_added_and_removed_runs(versions, tmp_path):
    old, new, _ = versions
    (new / "sweep.yaml").unlink()
    lock_like([new])
    kinds = {c.name: c.kind for c in compare(new, old)}
    assert kinds["tiny-sweep-code0"] == "added"
    kinds = {c.name: c.kind for c in compare(old, new)}
    assert kinds["tiny-sweep-code0"] == "removed"


# --------------------------------------------------------------------------- the real CLI


def test_cli_two_runs_of_one_set():
    result = run_cli("diff", "specs/tiny:tiny-code", "specs/tiny:tiny-code-text")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "hash changed by:" in out and "schedule.phases[0].peak" in out
    assert "not hashed" in out and "description" in out
    assert "descendants of tiny-code-text" in out and "tiny-cooldown" in out
    # locked hashes (runix hash's), and the locked input only one of them reads
    runs = by_name(TINY)
    assert f"A  {runs['tiny-code'].short_hash}  tiny-code" in out
    assert f"B  {runs['tiny-code-text'].short_hash}  tiny-code-text" in out
    assert "inputs.sources.text" in out and "note:" not in out


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
    old_code, new_code = by_name(old)["tiny-code"], by_name(new)["tiny-code"]
    assert f"changed: tiny-code  {old_code.short_hash} → {new_code.short_hash}" in out
    assert "note:" not in out  # both sides locked: nothing to say


@pytest.mark.parametrize("unlock", ["no lockfile", "an input not in the lockfile"])
def test_cli_compares_without_locked_inputs_when_a_side_has_no_lock_and_says_so(versions, unlock):
    old, new, edit = versions
    if unlock == "no lockfile":
        edit("{kind: warmup, length: 10, peak: 3e-3}", "{kind: warmup, length: 10, peak: 4e-3}")
    else:  # a new source URI: the lock has no entry for it until `runix lock`
        edit('{uri: "builtin://markup", role: markup, share', '{uri: "builtin://elsewhere", role: markup, share', relock=False)
    if unlock == "no lockfile":
        # Both lockfiles go: with new.lock.json still there, old (same run names, same inputs) would hash with it.
        (old.parent / "lockfiles" / "old.lock.json").unlink()
        (old.parent / "lockfiles" / "new.lock.json").unlink()
    # run from the project: tiny's shipped lockfile would otherwise be found for the old copy by its run names
    result = run_cli("diff", "old", "new", cwd=old.parent)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1
    if unlock == "no lockfile":
        assert "old: it has no lockfile" in notes[0]
    else:
        assert "new: its lockfile" in notes[0] and "new.lock.json has no entry for source markup builtin://elsewhere" in notes[0]
    assert "comparing hashes without locked inputs on both sides" in notes[0]
    assert "3 unchanged, 1 changed, 2 re-hashed through a parent" in out
    old_code, new_code = (load_spec_set([path]).by_name()["tiny-code"] for path in (old, new))
    assert f"changed: tiny-code  {old_code.short_hash} → {new_code.short_hash}" in out


def test_cli_names_and_hashes_with_in():
    code = by_name(TINY)["tiny-code"]  # the hash `runix hash` prints
    result = run_cli("diff", code.hash[:10], "tiny-code", "--in", "specs/tiny")
    assert result.returncode == 0, result.stderr
    assert "same hash" in result.stdout and "no field differs" in result.stdout


def test_cli_bad_operands_exit_2():
    missing = run_cli("diff", "specs/tiny:no-such-run", "specs/tiny:tiny-code")
    assert missing.returncode == 2 and "no run named 'no-such-run'" in missing.stderr
    bare = run_cli("diff", "tiny-code", "tiny-code-text")
    assert bare.returncode == 2 and "--in" in bare.stderr
    assert "Traceback" not in missing.stderr + bare.stderr


def test_cli_recurses_into_changed_parents(versions):
    """A grandchild re-hashed only through its chain: diff names what changed in each ancestor, in order."""
    old, new, edit = versions
    edit("{kind: warmup, length: 10, peak: 3e-3}", "{kind: warmup, length: 10, peak: 4e-3}")
    result = run_cli("diff", "old:tiny-cooldown", "new:tiny-cooldown", cwd=old.parent)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "hash changed by: init.parent" in lines
    start = lines.index(next(line for line in lines if line.startswith("init.parent: the parent's hash differs")))
    assert "tiny-code-text → tiny-code-text" in lines[start]
    assert lines[start + 1] == "  parent tiny-code-text: its own parent's hash differs"
    assert lines[start + 2].startswith("    parent tiny-code: schedule.phases[0].peak 0.003 → 0.004; "
                                       "schedule.phases[1].start 0.003 → 0.004")
