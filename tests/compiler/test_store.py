"""The store, on a local folder, on a bucket of a real S3-compatible server, and on fsspec's memory filesystem."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from compiler.lock import build_lock
from compiler.problems import SpecError
from compiler.spec import RunSpec
from compiler.specset import compile_documents, read_documents
from compiler.store import Store, StoreError
from compiler.store.layout import COMPLETE_FILE, MANIFEST_FILE, SPEC_FILE
from tests.conftest import REPO
from tests.lockfixture import FIXED_ENVIRONMENT, FixedResolver


def locked_tiny():
    """specs/tiny hashed under a fixed lock: (runs by name, lock)."""
    documents = read_documents([REPO / "specs" / "tiny"])
    lock = build_lock(compile_documents(documents), ("specs/tiny",), FixedResolver(), FIXED_ENVIRONMENT)
    return compile_documents(documents, lock.inputs_for).by_name(), lock


RUNS, LOCK = locked_tiny()


@pytest.fixture(params=["local", "s3", "gcs", "memory"])
def store(request, tmp_path):
    if request.param == "local":
        return Store(str(tmp_path / "store"))
    if request.param in ("s3", "gcs"):
        return Store(request.getfixturevalue(f"{request.param}_store_url"), staging=tmp_path / "staging")
    return Store(f"memory://store-{uuid.uuid4().hex}/root", staging=tmp_path / "staging")


def build(store, name="tiny-code", payload=b"params", finish=True):
    run = RUNS[name]
    started = store.begin_build(run, LOCK.entries_for(run), {"steps": run.spec.total_steps})
    assert started is not None
    (started.path / "checkpoints" / "final").mkdir(parents=True, exist_ok=True)
    (started.path / "checkpoints" / "final" / "params.bin").write_bytes(payload)
    (started.path / "metrics.jsonl").write_text('{"step": 1, "loss": 1.5}\n')
    (started.path / "digest.json").write_text('{"final_params_sha256": "x"}')
    if finish:
        started.finish()
    return run, started


# --------------------------------------------------------------------------- building and reading


def test_build_publish_and_verify(store):
    run, started = build(store, finish=False)
    assert not store.is_built(run.hash)
    spec = json.loads((started.path / SPEC_FILE).read_text())
    assert set(spec) == {"hash", "name", "parent_hash", "spec"}
    assert spec["hash"] == run.hash and spec["name"] == "tiny-code" and spec["parent_hash"] is None
    assert spec["spec"] == run.spec.model_dump(mode="json")
    assert RunSpec.model_validate(spec["spec"]) == run.spec  # the runtime gets back exactly the resolved run
    assert json.loads((started.path / "lock.json").read_text()) == LOCK.entries_for(run)
    assert json.loads((started.path / "plan.json").read_text()) == {"steps": 60}
    path = started.finish()
    assert path.endswith(f"/{run.hash}-tiny-code")
    assert store.is_built(run.hash) and store.entry(run.hash) == path
    assert store.built_hashes() == {run.hash}
    assert store.verify(run.hash) == []
    assert store.read_json(run.hash, SPEC_FILE) == spec
    assert [(e.name, e.status) for e in store.ls()] == [("tiny-code", "built")]
    assert store.begin_build(run, LOCK.entries_for(run)) is None  # built: skipped, as Nix skips a built derivation
    files = set(store._files_under(path))
    assert {"spec.json", "lock.json", "plan.json", "metrics.jsonl", "digest.json", "checkpoints/final/params.bin",
            MANIFEST_FILE, COMPLETE_FILE} <= files


def test_a_child_records_its_parent(store):
    build(store, "tiny-code")
    child, _ = build(store, "tiny-code-text")
    entry = {e.name: e for e in store.ls()}["tiny-code-text"]
    assert entry.parent_hash == RUNS["tiny-code"].hash == child.parent_hash


def test_hash_prefixes(store):
    run, _ = build(store)
    assert store.resolve(run.hash[:8]) == run.hash
    assert store.verify(run.hash[:10]) == []
    with pytest.raises(StoreError, match="not in the store"):
        store.resolve("0" * 64)
    with pytest.raises(StoreError, match="not a run hash"):
        store.resolve("../../etc")


def test_a_build_in_progress_is_never_taken_for_a_built_run(store):
    run, started = build(store, finish=False)
    assert not store.is_built(run.hash)
    assert [e.status for e in store.ls()] == ["building"]
    with pytest.raises(StoreError, match="not in the store"):
        store.entry(run.hash)
    started.abort()


def test_a_publish_cut_short_is_not_built_and_is_rebuilt(store):
    run, _ = build(store)
    store.fs.rm(store.entry(run.hash) + "/" + COMPLETE_FILE)  # a crash between the rename and the marker
    assert not store.is_built(run.hash)
    assert [e.status for e in store.ls()] == ["incomplete"]
    with pytest.raises(StoreError, match="no completion marker"):
        store.entry(run.hash)
    again = store.begin_build(run, LOCK.entries_for(run))
    assert again is not None
    assert again.resumed == store.is_local  # a local store moves the folder back and resumes in it
    (again.path / "digest.json").write_text("{}")
    again.finish()
    assert store.is_built(run.hash) and store.verify(run.hash) == []


def test_an_interrupted_build_resumes_in_place(store):
    run, started = build(store, finish=False)
    started.abort()  # keeps the folder, releases the lock
    fresh = Store(store.url, staging=store.staging)  # another launcher process, same store
    again = fresh.begin_build(run, LOCK.entries_for(run))
    assert again.resumed and again.path == started.path
    assert (again.path / "checkpoints" / "final" / "params.bin").read_bytes() == b"params"
    again.finish()
    assert fresh.verify(run.hash) == []


def test_context_manager_keeps_a_failed_build_for_resume(store):
    run = RUNS["tiny-code"]
    with pytest.raises(RuntimeError):
        with store.begin_build(run, LOCK.entries_for(run)) as started:
            (started.path / "checkpoints").mkdir()
            raise RuntimeError("training crashed")
    assert store.begin_build(run, LOCK.entries_for(run)).resumed


# --------------------------------------------------------------------------- tampering


def _tamper_spec_consistently(store, path):
    """Rewrite spec.json and fix up manifest and marker: only the re-hash can tell."""
    spec = json.loads(store.fs.cat_file(f"{path}/{SPEC_FILE}"))
    spec["spec"]["optimizer"]["b2"] = 0.99
    data = json.dumps(spec).encode()
    store.fs.pipe_file(f"{path}/{SPEC_FILE}", data)
    manifest = json.loads(store.fs.cat_file(f"{path}/{MANIFEST_FILE}"))
    manifest["files"][SPEC_FILE] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest_bytes = json.dumps(manifest).encode()
    store.fs.pipe_file(f"{path}/{MANIFEST_FILE}", manifest_bytes)
    marker = json.loads(store.fs.cat_file(f"{path}/{COMPLETE_FILE}"))
    marker["manifest_sha256"] = hashlib.sha256(manifest_bytes).hexdigest()
    store.fs.pipe_file(f"{path}/{COMPLETE_FILE}", json.dumps(marker).encode())


TAMPERS = {
    "flipped byte": (lambda s, p: s.fs.pipe_file(f"{p}/checkpoints/final/params.bin", b"paramz"),
                     "checkpoints/final/params.bin: content differs"),
    "truncated": (lambda s, p: s.fs.pipe_file(f"{p}/metrics.jsonl", b""), "metrics.jsonl: content differs"),
    "deleted": (lambda s, p: s.fs.rm(f"{p}/digest.json"), "digest.json: missing"),
    "added": (lambda s, p: s.fs.pipe_file(f"{p}/checkpoints/extra.bin", b"x"), "checkpoints/extra.bin: not in the manifest"),
    "manifest edited": (lambda s, p: s.fs.pipe_file(f"{p}/{MANIFEST_FILE}", b'{"files": {}}'), "manifest.json was modified"),
    "marker removed": (lambda s, p: s.fs.rm(f"{p}/{COMPLETE_FILE}"), "COMPLETE.json is missing"),
    "manifest escapes": (None, "names a path outside the entry: '../../x'"),
    "spec rewritten": (_tamper_spec_consistently, "hash to"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERS))
def test_any_tampering_is_found_naming_the_file(store, kind):
    run, _ = build(store)
    path = store.entry(run.hash)
    tamper, expected = TAMPERS[kind]
    if tamper is None:  # a manifest (and marker) pointing outside the entry
        manifest = json.loads(store.fs.cat_file(f"{path}/{MANIFEST_FILE}"))
        manifest["files"]["../../x"] = {"sha256": "0" * 64, "size": 0}
        data = json.dumps(manifest).encode()
        store.fs.pipe_file(f"{path}/{MANIFEST_FILE}", data)
        marker = json.loads(store.fs.cat_file(f"{path}/{COMPLETE_FILE}"))
        store.fs.pipe_file(f"{path}/{COMPLETE_FILE}", json.dumps({**marker, "manifest_sha256": hashlib.sha256(data).hexdigest()}).encode())
    else:
        tamper(store, path)
    try:
        problems = store.verify(run.hash)
    except StoreError as err:  # without its marker the entry does not exist as a built run
        problems = [str(err)]
    assert any(expected in p for p in problems), problems
    with pytest.raises(StoreError):
        store.read_json(run.hash, SPEC_FILE)


# --------------------------------------------------------------------------- unsafe input


class _Named:
    def __init__(self, name, run_hash="a" * 64):
        self.name, self.hash, self.parent_hash, self.spec = name, run_hash, None, RUNS["tiny-code"].spec


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ""])
def test_names_that_leave_the_store_are_refused(store, name):
    with pytest.raises(StoreError, match="outside the store"):
        store.begin_build(_Named(name), {})
    assert store.ls() == []


def test_foreign_folders_in_the_root_are_ignored(store):
    build(store)
    store.fs.makedirs(f"{store.root}/not-an-entry", exist_ok=True)
    foreign = f"{store.root}/{'b' * 64}-not a run name"  # a name the store never makes
    store.fs.makedirs(foreign, exist_ok=True)
    store.fs.pipe_file(f"{foreign}/{COMPLETE_FILE}", b"{}")
    assert [e.name for e in store.ls()] == ["tiny-code"]


def test_bad_hashes_are_bad_input(store):
    for bad in ("../x", "XYZ", "a" * 65):
        with pytest.raises(StoreError) as err:
            store.verify(bad)
        assert isinstance(err.value, SpecError)


# --------------------------------------------------------------------------- garbage collection


def test_gc_keeps_what_is_reached_including_parents_by_hash(store):
    for name in ("tiny-code", "tiny-code-text", "tiny-sweep-code0"):
        build(store, name)
    _, in_progress = build(store, "tiny-sweep-code50", finish=False)
    in_progress.abort()
    would = store.gc({RUNS["tiny-code-text"].hash}, dry_run=True)
    assert sorted(e.name for e in would) == ["tiny-sweep-code0", "tiny-sweep-code50"]
    assert len(store.ls()) == 4
    removed = store.gc({RUNS["tiny-code-text"].hash})
    assert sorted(e.name for e in removed) == ["tiny-sweep-code0", "tiny-sweep-code50"]
    assert sorted(e.name for e in store.ls()) == ["tiny-code", "tiny-code-text"]
    assert store.verify(RUNS["tiny-code"].hash) == []


def test_gc_leaves_a_build_someone_holds(store):
    run, started = build(store, "tiny-sweep-code0", finish=False)
    other = Store(store.url, staging=store.staging)
    assert other.gc(set()) == []
    assert started.path.is_dir()
    started.finish()
    assert [e.name for e in other.gc(set())] == ["tiny-sweep-code0"]


# --------------------------------------------------------------------------- concurrency


def test_no_wait_returns_none_while_another_builder_holds_the_lock(store):
    run, started = build(store, finish=False)
    other = Store(store.url, staging=store.staging)
    assert other.begin_build(run, LOCK.entries_for(run), wait=False) is None
    assert other.begin_build(run, LOCK.entries_for(run), timeout=0.2) is None
    started.finish()
    assert other.begin_build(run, LOCK.entries_for(run), wait=False) is None  # built now


def test_two_threads_build_once(store):
    run = RUNS["tiny-code"]
    results = []
    barrier = threading.Barrier(2)

    def launch():
        own = Store(store.url, staging=store.staging)
        barrier.wait()
        started = own.begin_build(run, LOCK.entries_for(run))
        if started is None:
            results.append("skipped")
            return
        (started.path / "digest.json").write_text("{}")
        time.sleep(0.3)
        started.finish()
        results.append("built")

    threads = [threading.Thread(target=launch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == ["built", "skipped"]
    assert store.verify(run.hash) == []


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from tests.compiler.test_store import RUNS, LOCK
    from compiler.store import Store
    run = RUNS["tiny-code"]
    store = Store({url!r})
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    started = store.begin_build(run, LOCK.entries_for(run))
    if started is None:
        print("skipped", flush=True)
        sys.exit(0)
    (started.path / "checkpoints").mkdir(exist_ok=True)
    (started.path / "checkpoints" / "step-1").write_bytes(b"x" * 1000)
    print("building", started.resumed, flush=True)
    time.sleep(float(sys.argv[1]))
    started.finish()
    print("built", flush=True)
""")


def _child(url, hold):
    return subprocess.Popen([sys.executable, "-c", CHILD.format(repo=str(REPO), url=url), str(hold)], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_build_once_on_a_local_store(tmp_path):
    url = str(tmp_path / "store")
    children = [_child(url, 0.5) for _ in range(2)]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    outputs = [child.communicate(timeout=60)[0].split() for child in children]
    assert all(child.returncode == 0 for child in children), [c.stderr for c in children]
    finals = sorted(out[-1] for out in outputs)
    assert finals == ["built", "skipped"]
    assert Store(url).verify(RUNS["tiny-code"].hash) == []


def test_a_killed_builder_frees_the_lock_and_its_build_resumes(tmp_path):
    url = str(tmp_path / "store")
    child = _child(url, 60)
    assert child.stdout.readline().strip() == "ready"
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().split()[0] == "building"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    store = Store(url)
    run = RUNS["tiny-code"]
    assert not store.is_built(run.hash)
    started = store.begin_build(run, LOCK.entries_for(run), timeout=10)
    assert started is not None and started.resumed
    assert (started.path / "checkpoints" / "step-1").read_bytes() == b"x" * 1000
    started.finish()
    assert store.verify(run.hash) == []


def test_the_runtime_finds_its_build_folder_by_hash(store):
    run, started = build(store, finish=False)
    assert store.build_path_of(run.hash) == started.path
    assert Store(store.url, staging=store.staging).build_path_of(run.hash) == started.path
    started.finish()
    assert store.build_path_of(run.hash) is None


def test_a_local_copy_of_a_built_entry(store):
    run, _ = build(store, payload=b"parent weights")
    copy = store.local_copy(run.hash)
    assert (copy / "checkpoints" / "final" / "params.bin").read_bytes() == b"parent weights"
    assert json.loads((copy / SPEC_FILE).read_text())["hash"] == run.hash
    assert store.local_copy(run.hash[:12]) == copy  # reused
    if not store.is_local:
        store.fs.pipe_file(store.entry(run.hash) + "/checkpoints/final/params.bin", b"tampered weight")
        (copy / COMPLETE_FILE).unlink()  # force a fresh download
        with pytest.raises(StoreError, match="params.bin: content differs"):
            store.local_copy(run.hash)


def test_a_registered_run_is_built_from_its_hash_alone(store):
    run = RUNS["tiny-code-text"]
    folder = store.register(run, LOCK.entries_for(run), {"steps": 40})
    assert store.register(run, LOCK.entries_for(run), {"steps": 40}) == folder  # idempotent
    assert [(e.name, e.status, e.parent_hash) for e in store.ls()] == [("tiny-code-text", "registered", run.parent_hash)]
    job = Store(store.url, staging=store.staging)  # the build job: a store URL and a hash
    started = job.begin_build(run.hash)
    spec = json.loads((started.path / SPEC_FILE).read_text())
    assert spec["hash"] == run.hash and spec["parent_hash"] == RUNS["tiny-code"].hash
    assert json.loads((started.path / "plan.json").read_text()) == {"steps": 40}
    started.finish()
    assert job.verify(run.hash) == []
    assert job.begin_build(run.hash) is None
    assert [e.status for e in store.ls()] == ["built"]


def test_unregistered_or_tampered_derivations_are_refused(store):
    run = RUNS["tiny-code"]
    with pytest.raises(StoreError, match="not registered"):
        store.begin_build(run.hash)
    folder = store.register(run, LOCK.entries_for(run))
    spec = json.loads(store.fs.cat_file(f"{folder}/{SPEC_FILE}"))
    spec["spec"]["steps"] = 61
    store.fs.pipe_file(f"{folder}/{SPEC_FILE}", json.dumps(spec).encode())
    with pytest.raises(StoreError, match="tampered derivation"):
        store.begin_build(run.hash)
    entries = dict(LOCK.entries_for(run))
    entries["inputs"] = {**entries["inputs"], "runtime": {"jax": "other"}}
    with pytest.raises(StoreError, match="refusing to register"):
        store.register(run, entries)


def test_gc_keeps_the_derivations_of_unbuilt_runs_and_drops_those_of_collected_ones(store):
    for name in ("tiny-code", "tiny-sweep-code0"):
        store.register(RUNS[name], LOCK.entries_for(RUNS[name]))
    result = store.collect({RUNS["tiny-code"].hash})
    assert result.removed == []  # a queued build job of another spec set starts from tiny-sweep-code0's derivation
    kept = {entry.name: reason for entry, reason in result.kept}
    assert kept["tiny-sweep-code0"].startswith("registered and not built yet")
    build(store, "tiny-sweep-code0")
    removed = store.gc({RUNS["tiny-code"].hash})
    assert [e.name for e in removed] == ["tiny-sweep-code0"]  # built and unreached: entry and derivation go
    assert [e.name for e in store.ls()] == ["tiny-code"]


