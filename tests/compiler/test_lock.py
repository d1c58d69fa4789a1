"""The lock: format, what enters the hash, which edits need a relock (only new inputs), and launch's gate."""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil

import pytest

from compiler.lock import (
    Lock, build_lock, compare_locks, default_lockfile, load_locked_spec_set, lockfile_name, read_lock,
    relative_spec_paths, require_fully_resolved, spec_set_root, write_lock,
)
from compiler.problems import SpecError
from compiler.resolve_inputs import Resolution
from compiler.specset import load_spec_set
from tests.conftest import MINIMAL_RUN, REPO

FAKE_ENV = {
    "runtime": {"python": "3.11.7", "jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.8", "optax": "0.2.8",
                "grain": "0.2.18", "orbax-checkpoint": "0.12.8", "numpy": "2.4.6"},
    # Shaped like runtime.numerics.host_facts: `facts` are hashed (with the mesh's pinned flags), `host` is not.
    "numerics": {"facts": {"machine": "x86_64", "cpu_isa": ["avx2", "fma"], "python": "3.11.7"},
                 "host": {"cpu_model": "Fake CPU"}},
}


def fake_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class FakeResolver:
    """Digests derived from the URI (plus a salt), gs:// unreachable; counts every call."""

    def __init__(self, salt: str = "", unreachable: tuple[str, ...] = ("gs://",)):
        self.salt = salt
        self.unreachable = unreachable
        self.calls: list[str] = []

    def source(self, uri):
        self.calls.append(uri)
        if uri.startswith(self.unreachable):
            return Resolution(unresolved="no credentials here")
        return Resolution(locked={"type": "fake", "digest": fake_digest(self.salt + uri),
                                  "files": {"a": {"sha256": fake_digest(self.salt + uri + "/a"), "size": 1}}})

    def tokenizer(self, uri, vocab_size):
        self.calls.append(f"{uri}@{vocab_size}")
        return Resolution(locked={"type": "fake-tokenizer", "digest": fake_digest(f"{uri}{vocab_size}"),
                                  "vocab_size": vocab_size})

    def token_count(self, source_uri, source, tokenizer_uri, vocab_size, tokenizer, reader):
        return 1000 + len(source_uri)


def make_project(tmp_path: pathlib.Path, text: str = MINIMAL_RUN, name: str = "specs") -> pathlib.Path:
    """A project folder (pyproject.toml marks its root) with one spec set under specs/."""
    (tmp_path / "pyproject.toml").write_text("")
    folder = tmp_path / name
    folder.mkdir(parents=True)
    (folder / "runs.yaml").write_text(text)
    return folder


def lock_folder(folder: pathlib.Path, resolver=None, env=FAKE_ENV) -> pathlib.Path:
    paths = [folder]
    rel = relative_spec_paths(paths, spec_set_root(paths))
    lock = build_lock(load_spec_set(paths), rel, resolver or FakeResolver(), env)
    path = default_lockfile(paths)
    write_lock(path, lock)
    return path


def tiny_copy(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "pyproject.toml").write_text("")
    shutil.copytree(REPO / "specs" / "tiny", tmp_path / "specs" / "tiny")
    return tmp_path / "specs" / "tiny"


# --------------------------------------------------------------------------- format


def test_lockfile_keeps_original_apart_from_locked_and_is_sorted_json(tmp_path):
    folder = tiny_copy(tmp_path)
    path = lock_folder(folder)
    assert path == tmp_path / "lockfiles" / "tiny.lock.json"
    text = path.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert data["spec_set"]["paths"] == ["specs/tiny"]
    assert set(data["spec_set"]["runs"]) == {"tiny-code", "tiny-code-text", "tiny-cooldown",
                                             "tiny-sweep-code0", "tiny-sweep-code50", "tiny-sweep-code100"}
    code = data["sources"]["builtin://code"]
    assert code["original"] == {"uri": "builtin://code"}
    assert code["locked"]["digest"] == fake_digest("builtin://code")
    assert code["locked"]["token_counts"] == {"builtin://bpe?vocab_size=4096": 1000 + len("builtin://code")}
    assert data["tokenizers"]["builtin://bpe?vocab_size=4096"]["original"] == {"uri": "builtin://bpe", "vocab_size": 4096}
    assert data["runix_lock"] == 2
    assert data["environment"] == {"runtime": FAKE_ENV["runtime"], "numerics": {"cpu": FAKE_ENV["numerics"]}}
    # The runs are listed with their hashes under this lock, for review only.
    assert data["spec_set"]["runs"] == hashes_of(folder)
    # Writing the same lock again gives the same bytes: no clock, no absolute paths.
    before = path.read_bytes()
    lock_folder(folder)
    assert path.read_bytes() == before
    assert str(tmp_path) not in text


def test_each_input_is_resolved_once(tmp_path):
    resolver = FakeResolver()
    lock_folder(tiny_copy(tmp_path), resolver)
    assert sorted(resolver.calls) == sorted(set(resolver.calls))


def test_lockfile_names():
    assert lockfile_name([REPO / "specs" / "tiny"]) == "tiny.lock.json"
    assert lockfile_name([REPO / "specs" / "tiny" / "chain.yaml"]) == "chain.lock.json"
    assert lockfile_name([REPO / "specs" / "tiny" / "sweep.yaml", REPO / "specs" / "tiny" / "chain.yaml"]) == "chain+sweep.lock.json"
    assert default_lockfile([REPO / "specs" / "tiny"]) == REPO / "lockfiles" / "tiny.lock.json"


# --------------------------------------------------------------------------- the hash covers the lock


def hashes_of(folder):
    return {run.name: run.hash for run in load_locked_spec_set([folder]).spec_set.runs}


def hashes_with(folder, resolver=None, env=FAKE_ENV):
    lock_folder(folder, resolver, env)
    return hashes_of(folder)


def test_locked_inputs_enter_the_hash_of_the_runs_that_read_them(tmp_path):
    folder = tiny_copy(tmp_path)
    unlocked = {run.name: run.hash for run in load_spec_set([folder]).runs}
    base = hashes_with(folder)
    assert all(base[name] != unlocked[name] for name in base)

    class MarkupChanged(FakeResolver):
        def source(self, uri):
            found = super().source(uri)
            if uri == "builtin://markup":
                return Resolution(locked={**found.locked, "digest": fake_digest("other markup bytes")})
            return found

    changed = hashes_with(folder, MarkupChanged())
    # markup is read by tiny-code only; its children change through the parent hash.
    assert {n for n in base if base[n] != changed[n]} == {"tiny-code", "tiny-code-text", "tiny-cooldown"}


def test_runtime_versions_enter_every_hash(tmp_path):
    folder = tiny_copy(tmp_path)
    base = hashes_with(folder)
    env = {**FAKE_ENV, "runtime": {**FAKE_ENV["runtime"], "jax": "0.10.3"}}
    assert all(a != b for a, b in zip(base.values(), hashes_with(folder, env=env).values()))


def numerics_of(isa, model="Xeon"):
    """Per-accelerator-kind facts shaped like runtime.numerics.host_facts: `facts` hashed, `host` recorded only."""

    def facts(kind):
        found = {"machine": "x86_64", "packages": {"jax": "0.10.2"}}
        if kind == "cpu":
            found["cpu_isa"] = list(isa)
        return {"facts": found, "host": {"cpu_model": model}}

    return facts


TPU_RUN = MINIMAL_RUN.replace("    steps: 10\n", "    steps: 10\n    mesh: {accelerator: tpu-v5e, chips: 8, axes: {data: 8}}\n")


def test_numerics_facts_of_each_accelerator_kind_enter_its_runs_and_host_facts_do_not(tmp_path):
    both = TPU_RUN + MINIMAL_RUN.replace("runs:\n", "").replace("name: base", "name: on-cpu")
    folder = make_project(tmp_path, both)
    env = {"runtime": FAKE_ENV["runtime"], "numerics": numerics_of(["sse4_2", "avx", "avx2"])}
    base = hashes_with(folder, env=env)
    lock = read_lock(default_lockfile([folder]))
    assert sorted(lock.environment.numerics) == ["cpu", "tpu-v5e"]  # keyed by accelerator kind, not by mesh
    assert hashes_with(folder, env={**env, "numerics": numerics_of(["sse4_2", "avx", "avx2"], model="EPYC")}) == base
    changed = hashes_with(folder, env={**env, "numerics": numerics_of(["sse4_2"])})
    assert changed["base"] == base["base"]  # the TPU run
    assert changed["on-cpu"] != base["on-cpu"]
    drift = compare_locks(lock, read_lock(default_lockfile([folder])))
    assert [(d.what, d.note) for d in drift] == [("numerics [cpu]", "differs in cpu_isa")]
    # What the hash sees: the recorded facts plus the pinned flags of the run's mesh (runtime.numerics).
    on_cpu = load_locked_spec_set([folder]).spec_set.by_name()["on-cpu"]
    bits = lock.inputs_for(on_cpu.spec)["numerics"]
    assert bits["cpu_effective_isa"] == "AVX2" and bits["cpu_thread_pool"] == 4 and bits["machine"] == "x86_64"


def test_a_mesh_change_on_a_locked_accelerator_kind_needs_no_relock(tmp_path):
    folder = make_project(tmp_path)
    path = lock_folder(folder, env={"runtime": FAKE_ENV["runtime"], "numerics": numerics_of(["avx2"])})
    before = path.read_bytes()
    base = hashes_of(folder)
    (folder / "runs.yaml").write_text(MINIMAL_RUN.replace("    steps: 10\n",
                                                          "    steps: 10\n    mesh: {chips: 8, axes: {data: 8}}\n"))
    locked = load_locked_spec_set([folder])
    run = locked.spec_set.runs[0]
    assert run.hash != base["base"]
    assert locked.lock.inputs_for(run.spec)["numerics"]["cpu_thread_pool"] == 8  # derived from the mesh, not read
    assert path.read_bytes() == before


def test_a_new_accelerator_kind_needs_a_relock_naming_it(tmp_path):
    folder = make_project(tmp_path)
    lock_folder(folder)
    (folder / "runs.yaml").write_text(TPU_RUN)
    with pytest.raises(SpecError) as err:
        load_locked_spec_set([folder])
    [problem] = err.value.problems
    assert problem.path == "runs[base].mesh.accelerator"
    assert "numerics of accelerator tpu-v5e is not in" in problem.message and f"runix lock {folder}" in problem.message


def test_unresolved_sources_still_hash_and_dry_run(tmp_path):
    text = MINIMAL_RUN.replace('"builtin://code"', '"gs://bucket/code"').replace(
        "share: 1.0}", "share: 1.0, declared_tokens: 1B}")
    folder = make_project(tmp_path, text)
    path = lock_folder(folder)
    lock = read_lock(path)
    assert lock.sources["gs://bucket/code"].unresolved == "no credentials here"
    assert lock.sources["gs://bucket/code"].locked is None
    locked = load_locked_spec_set([folder])
    run = locked.spec_set.runs[0]
    assert lock.inputs_for(run.spec)["sources"] == {"code": {"unresolved": True}}
    assert lock.token_count("gs://bucket/code", run.spec) is None


# --------------------------------------------------------------------------- staleness (hermetic)


def test_hashing_with_a_lock_reads_no_data(tmp_path, monkeypatch):
    folder = tiny_copy(tmp_path)
    lock_folder(folder)
    import compiler.resolve_inputs as resolvers

    def boom(*args, **kwargs):
        raise AssertionError("hashing must not resolve inputs")

    monkeypatch.setattr(resolvers, "resolve_path", boom)
    monkeypatch.setattr(resolvers, "resolve_tfds", boom)
    monkeypatch.setattr(resolvers.DefaultResolver, "__init__", boom)
    assert len(load_locked_spec_set([folder]).spec_set.runs) == 6


def test_missing_lock_says_how_to_create_it(tmp_path):
    folder = make_project(tmp_path)
    with pytest.raises(SpecError) as err:
        load_locked_spec_set([folder])
    message = str(err.value)
    assert "no lockfile" in message and f"runix lock {folder}" in message
    assert str(tmp_path / "lockfiles" / "specs.lock.json") in message


@pytest.mark.parametrize("edit", [
    lambda text: text.replace("peak: 1e-3", "peak: 2e-3"),  # schedule
    lambda text: text.replace("steps: 10", "steps: 12"),  # length
    lambda text: text.replace("    steps: 10\n", "    steps: 10\n    init: {kind: scratch, seed: 7}\n"),  # seed
    lambda text: text.replace("{preset: tiny}", "{preset: tiny, d_ff: 512}"),  # model dims
    lambda text: text.replace('share: 1.0}', 'share: 0.5}\n        more: {uri: "builtin://code", role: code, share: 0.5}'),
])
def test_editing_anything_but_an_input_needs_no_relock(tmp_path, edit):
    folder = make_project(tmp_path)
    path = lock_folder(folder)
    before = path.read_bytes()
    old = hashes_of(folder)
    (folder / "runs.yaml").write_text(edit(MINIMAL_RUN))
    new = hashes_of(folder)
    assert new["base"] != old["base"]
    assert path.read_bytes() == before  # the review record keeps the hashes it was written with
    assert read_lock(path).spec_set.runs == old


def test_a_new_source_uri_needs_a_relock_naming_it_at_the_spec(tmp_path):
    folder = make_project(tmp_path)
    lock_folder(folder)
    (folder / "runs.yaml").write_text(MINIMAL_RUN.replace('"builtin://code"', '"builtin://text"'))
    with pytest.raises(SpecError) as err:
        load_locked_spec_set([folder])
    [problem] = err.value.problems
    assert problem.location.file == str(folder / "runs.yaml") and problem.location.line == 2
    assert problem.path == "runs[base].data.sources.code.uri"
    assert problem.message == (f"source code builtin://text is not in {tmp_path / 'lockfiles' / 'specs.lock.json'}; "
                               f"add it with `runix lock {folder}`")


def test_a_new_tokenizer_needs_a_relock_naming_it_once_for_all_its_runs(tmp_path):
    folder = make_project(tmp_path, MINIMAL_RUN + "  - {name: more, extends: base, steps: 20}\n")
    lock_folder(folder)
    text = MINIMAL_RUN.replace("{preset: tiny}", "{preset: tiny, vocab_size: 8192}")
    (folder / "runs.yaml").write_text(text + "  - {name: more, extends: base, steps: 20}\n")
    with pytest.raises(SpecError) as err:
        load_locked_spec_set([folder])
    [problem] = err.value.problems
    assert problem.path == "runs[base].data.tokenizer"
    assert "tokenizer builtin://bpe?vocab_size=8192 (and 1 more run) is not in" in problem.message


def test_added_and_removed_runs_need_no_relock(tmp_path):
    folder = make_project(tmp_path)
    lock_folder(folder)
    (folder / "runs.yaml").write_text(MINIMAL_RUN + "  - {name: more, extends: base, steps: 20}\n")
    assert set(hashes_of(folder)) == {"base", "more"}
    lock_folder(folder)
    (folder / "runs.yaml").write_text(MINIMAL_RUN)
    assert set(hashes_of(folder)) == {"base"}


def test_a_parent_edit_rehashes_the_children_without_a_relock(tmp_path):
    folder = tiny_copy(tmp_path)
    lock_folder(folder)
    old = hashes_of(folder)
    chain = folder / "chain.yaml"
    chain.write_text(chain.read_text().replace("peak: 3e-3}\n        - {kind: cosine, floor: 3e-4}          # the rest",
                                               "peak: 4e-3}\n        - {kind: cosine, floor: 3e-4}          # the rest"))
    new = hashes_of(folder)
    assert {name for name in old if old[name] != new[name]} == {"tiny-code", "tiny-code-text", "tiny-cooldown"}


@pytest.mark.parametrize("content, expected", [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[]", "corrupt lockfile"),
    (b'{"runix_lock": 99}', "lockfile format 99"),
    (b'{"runix_lock": 1}', "lockfile format 1, this runix reads 2; rewrite it with `runix lock`"),
    (None, "corrupt lockfile"),  # valid JSON, a locked entry without its digest
])
def test_a_corrupt_lockfile_is_bad_input(tmp_path, content, expected):
    folder = make_project(tmp_path)
    path = lock_folder(folder)
    if content is None:
        data = json.loads(path.read_text())
        del data["sources"]["builtin://code"]["locked"]["digest"]
        content = json.dumps(data).encode()
    path.write_bytes(content)
    with pytest.raises(SpecError) as err:
        load_locked_spec_set([folder])
    assert expected in str(err.value) and str(path) in str(err.value)


def test_a_lockfile_of_another_spec_set_hashes_what_it_pins_and_names_what_it_lacks(tmp_path):
    folder = make_project(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.yaml").write_text(MINIMAL_RUN.replace("name: base", "name: elsewhere"))
    path = lock_folder(other)
    assert len(load_locked_spec_set([folder], lockfile=path).spec_set.runs) == 1  # same inputs: it can hash them
    (other / "x.yaml").write_text(MINIMAL_RUN.replace("name: base", "name: elsewhere").replace("builtin://code", "builtin://text"))
    lock_folder(other)
    with pytest.raises(SpecError) as err:
        load_locked_spec_set([folder], lockfile=path)
    message = str(err.value)
    assert "source code builtin://code is not in" in message
    assert "belongs to another spec set (other), not specs" in message and "other-specs.lock.json" not in message


def test_a_copied_or_partial_spec_set_finds_its_lock_by_content(tmp_path):
    folder = tiny_copy(tmp_path)
    lock_folder(folder)
    full = {r.name: r.hash for r in load_locked_spec_set([folder]).spec_set.runs}
    # One file of the locked folder: lockfiles/chain.lock.json does not exist, tiny's covers it.
    part = load_locked_spec_set([folder / "chain.yaml"])
    assert part.lockfile == tmp_path / "lockfiles" / "tiny.lock.json"
    assert {r.name: r.hash for r in part.spec_set.runs} == {n: full[n] for n in ("tiny-code", "tiny-code-text", "tiny-cooldown")}
    # A renamed copy outside any project, hashed from inside the project (cwd).
    copy = tmp_path.parent / (tmp_path.name + "-copy")
    shutil.copytree(folder, copy)
    (copy / "chain.yaml").rename(copy / "renamed.yaml")
    assert {r.name: r.hash for r in load_locked_spec_set([copy], cwd=tmp_path).spec_set.runs} == full
    shutil.rmtree(copy)


# --------------------------------------------------------------------------- launch gate, --check


def test_require_fully_resolved_names_every_unresolved_input(tmp_path):
    text = MINIMAL_RUN.replace("        code: {uri", "        web: {uri: \"gs://bucket/web\", role: text, share: 0.5}\n        code: {uri").replace(
        "share: 1.0}", "share: 0.5}")
    folder = make_project(tmp_path, text)
    lock_folder(folder)
    locked = load_locked_spec_set([folder])
    with pytest.raises(SpecError) as err:
        require_fully_resolved(locked.lock, locked.spec_set.runs)
    message = str(err.value)
    assert "source web gs://bucket/web is unresolved (no credentials here)" in message
    assert "runs[base]" in message
    lock_folder(folder, FakeResolver(unreachable=("nothing://",)))
    locked = load_locked_spec_set([folder])
    require_fully_resolved(locked.lock, locked.spec_set.runs)  # no error


def test_compare_locks_names_the_drifted_input_and_files(tmp_path):
    folder = make_project(tmp_path)
    old = read_lock(lock_folder(folder))
    new = read_lock(lock_folder(folder, FakeResolver(salt="x")))
    drifts = {d.what: d for d in compare_locks(old, new)}
    drift = drifts["source builtin://code"]
    assert drift.old == fake_digest("builtin://code") and drift.new == fake_digest("xbuiltin://code")
    assert "files changed: a" in str(drift)
    assert compare_locks(old, old) == []
    env = {**FAKE_ENV, "runtime": {**FAKE_ENV["runtime"], "numpy": "9.9"}}
    assert [str(d) for d in compare_locks(old, read_lock(lock_folder(folder, env=env)))] == ["runtime numpy: 2.4.6 → 9.9"]


def test_store_lock_entries_rehash_to_the_run_hash(tmp_path):
    from compiler.canonical import run_hash

    folder = tiny_copy(tmp_path)
    lock_folder(folder)
    locked = load_locked_spec_set([folder])
    for run in locked.spec_set.runs:
        entries = locked.lock.entries_for(run)
        assert run_hash(run.spec, run.parent_hash, entries["inputs"]) == run.hash
        assert set(entries["sources"]) == set(run.spec.data.sources)


def test_lock_model_rejects_malformed_entries(tmp_path):
    data = json.loads(lock_folder(tiny_copy(tmp_path)).read_text())
    data["environment"]["numerics"]["cpu"] = {"bits": {}}
    with pytest.raises(Exception, match="numerics entry 'cpu' has no 'facts' mapping"):
        Lock.model_validate(data)
    data = json.loads((tmp_path / "lockfiles" / "tiny.lock.json").read_text())
    data["spec_set"]["runs"]["tiny-code"] = "not a hash"
    with pytest.raises(Exception, match="runs tiny-code: not a hex sha256"):
        Lock.model_validate(data)


def test_two_locked_spec_sets_hash_together_from_their_own_lockfiles(tmp_path):
    folder = tiny_copy(tmp_path)
    other = make_project(tmp_path, MINIMAL_RUN, name="more")
    lock_folder(folder)
    lock_folder(other)
    alone = {r.name: r.hash for r in load_locked_spec_set([folder]).spec_set.runs}
    alone.update({r.name: r.hash for r in load_locked_spec_set([other]).spec_set.runs})
    both = load_locked_spec_set([folder, other])
    assert {r.name: r.hash for r in both.spec_set.runs} == alone
    assert sorted(p.name for p in both.lockfiles) == ["more.lock.json", "tiny.lock.json"]
    # Locks taken on machines with other software cannot be combined.
    lock_folder(other, env={**FAKE_ENV, "runtime": {**FAKE_ENV["runtime"], "jax": "9"}})
    with pytest.raises(SpecError, match="no lockfile for spec set more specs/tiny"):
        load_locked_spec_set([folder, other])


def test_environment_drift_compares_this_machine_with_the_lock(tmp_path):
    from compiler.environment import numerics_facts, runtime_versions
    from compiler.lock import environment_drift

    folder = make_project(tmp_path)
    here = {"runtime": runtime_versions(), "numerics": numerics_facts}
    lock = read_lock(lock_folder(folder, env=here))
    runs = load_locked_spec_set([folder]).spec_set.runs
    assert environment_drift(lock, runs) == []
    drifts = environment_drift(read_lock(lock_folder(folder, env={**here, "runtime": {**here["runtime"], "optax": "0.0.1"}})), runs)
    assert [d.what for d in drifts] == ["runtime optax"] and drifts[0].old == "0.0.1"
    older_cpu = {**here, "numerics": lambda kind: {**numerics_facts(kind), "facts": {**numerics_facts(kind)["facts"],
                                                                                    "cpu_isa": ["sse4_2"]}}}
    drifts = environment_drift(read_lock(lock_folder(folder, env=older_cpu)), runs)
    assert [d.what for d in drifts] == ["numerics [cpu]"]
    assert "cpu_effective_isa" in drifts[0].note and "cpu_isa" in drifts[0].note
