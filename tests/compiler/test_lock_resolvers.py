"""Resolvers of `runix lock`: fsspec paths, TFDS folders, built-in corpora, the environment."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import time
import types
import uuid

import fsspec
import pytest

from compiler import environment
from compiler.resolve_inputs import (
    BuiltinData, DefaultResolver, ResolveOptions, expand_braces, files_digest, resolve_path, resolve_tfds, with_timeout,
)
from tests.conftest import REPO


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- fsspec paths


def test_one_local_file(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"hello")
    found = resolve_path(str(tmp_path / "a.txt"))
    assert found.locked["files"] == {"a.txt": {"sha256": sha(b"hello"), "size": 5}}
    assert found.locked["digest"] == files_digest(found.locked["files"])
    assert resolve_path(f"file://{tmp_path / 'a.txt'}").locked == found.locked


def test_a_folder_a_glob_and_braces(tmp_path):
    for rel, data in {"x/1.txt": b"1", "x/sub/2.txt": b"22", "y/3.txt": b"333", "z/4.bin": b"4"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    folder = resolve_path(str(tmp_path / "x")).locked
    assert set(folder["files"]) == {"1.txt", "sub/2.txt"} and folder["size"] == 3
    glob = resolve_path(str(tmp_path / "*" / "*.txt")).locked
    assert set(glob["files"]) == {"x/1.txt", "y/3.txt"}
    braces = resolve_path(str(tmp_path / "{x,y}")).locked
    assert set(braces["files"]) == {"x/1.txt", "x/sub/2.txt", "y/3.txt"}
    # Where the data lives is not part of its digest.
    (tmp_path / "moved").mkdir()
    (tmp_path / "x").rename(tmp_path / "moved" / "x")
    assert resolve_path(str(tmp_path / "moved" / "x")).locked == folder


def test_memory_filesystem_and_content_changes():
    root = f"memory://lock-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{root}/d/a", b"a")
    fs.pipe(f"{root}/d/b", b"b")
    first = resolve_path(f"{root}/d", offline=True).locked  # memory is never "remote"
    fs.pipe(f"{root}/d/b", b"B")
    second = resolve_path(f"{root}/d").locked
    assert first["digest"] != second["digest"]
    assert first["files"]["a"] == second["files"]["a"]


def test_unreachable_sources_are_unresolved_not_errors(tmp_path):
    assert resolve_path(str(tmp_path / "missing")).unresolved == "not found"
    assert resolve_path(str(tmp_path / "*.nothing")).unresolved == "matches no files"
    assert "not contacted (--offline)" in resolve_path("gs://bucket/data", offline=True).unresolved
    online = resolve_path("gs://bucket/data")  # no gcsfs here, or no credentials: either way unresolved
    assert online.locked is None and online.unresolved


def test_a_slow_remote_times_out():
    def slow():
        time.sleep(5)

    started = time.monotonic()
    found = with_timeout(slow, 0.2)
    assert time.monotonic() - started < 2
    assert "no answer within 0.2 s" in found.unresolved


def test_expand_braces():
    assert expand_braces("d/{a,b}/x{1,2}") == ["d/a/x1", "d/a/x2", "d/b/x1", "d/b/x2"]
    assert expand_braces("plain") == ["plain"]


# --------------------------------------------------------------------------- tfds://


def make_tfds(root, name="mini", version="1.0.0", config=None, splits=("train", "test")):
    folder = root / name / (config or "") / version
    folder.mkdir(parents=True)
    (folder / "dataset_info.json").write_text(json.dumps({"version": version}))
    (folder / "features.json").write_text("{}")
    for split in splits:
        (folder / f"{name}-{split}.array_record-00000-of-00001").write_bytes(f"{split} {version}".encode())
    return folder


def test_tfds_split_files_and_newest_version(tmp_path):
    make_tfds(tmp_path, version="1.0.0")
    make_tfds(tmp_path, version="1.2.0")
    found = resolve_tfds("tfds://mini/train", tmp_path).locked
    assert found["version"] == "1.2.0"
    assert set(found["files"]) == {"mini-train.array_record-00000-of-00001", "dataset_info.json", "features.json"}
    pinned = resolve_tfds("tfds://mini:1.0.0/train[:10%]", tmp_path).locked
    assert pinned["version"] == "1.0.0" and pinned["digest"] != found["digest"]
    make_tfds(tmp_path, name="wiki", config="en", version="2.0.0")
    assert resolve_tfds("tfds://wiki/en:2.0.0/test", tmp_path).locked["config"] == "en"


def test_tfds_not_prepared_is_unresolved(tmp_path):
    assert "not prepared locally" in resolve_tfds("tfds://absent/train", tmp_path).unresolved
    assert "not prepared locally" in resolve_tfds("tfds://absent:1.0.0/train", tmp_path).unresolved
    make_tfds(tmp_path)
    assert "no prepared files" in resolve_tfds("tfds://mini/validation", tmp_path).unresolved
    assert "not a TFDS URI" in resolve_tfds("tfds://", tmp_path).unresolved


# --------------------------------------------------------------------------- builtin:// through dataprep


@dataclasses.dataclass
class FakeManifest:
    name: str
    uri: str
    digest: str
    files: dict
    tfds_dir: str
    num_documents: int
    num_text_bytes: int
    inputs_digest: str
    provenance: dict
    path: object


@pytest.fixture
def fake_runtime_data(tmp_path, monkeypatch):
    """dataprep's preparation functions replaced by fakes writing tiny files."""

    def prepare_corpus(name, root):
        if name == "broken":
            raise FileNotFoundError("Debian package 'x' is not unpacked; run scripts/install_corpora.sh first")
        folder = root / "corpora" / name
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "data.array_record").exists():  # like dataprep: a finished build is reused
            (folder / "data.array_record").write_bytes(name.encode())
        files = {"data.array_record": sha(name.encode())}
        digest = hashlib.sha256(json.dumps({"files": files}, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        return FakeManifest(name, f"builtin://{name}", digest, files, ".", 1, len(name), "in", {"v": 1}, folder)

    @dataclasses.dataclass
    class Artifact:
        digest: str
        vocab_size: int
        eos_id: int = 0

    corpora = types.SimpleNamespace(prepare_corpus=prepare_corpus)
    tokenizer = types.SimpleNamespace(train_tokenizer=lambda manifests, vocab, root: Artifact(sha(f"bpe{vocab}".encode()), vocab))
    shards = types.SimpleNamespace(build_shard=lambda manifest, artifact, root: types.SimpleNamespace(num_tokens=7 * len(manifest.name)))
    names = types.SimpleNamespace(builtin_names=lambda: ("code", "text"))
    for module, fake in (("corpora", corpora), ("tokenizer", tokenizer), ("shards", shards), ("builtin_corpora", names)):
        monkeypatch.setitem(sys.modules, f"dataprep.{module}", fake)
    return tmp_path / "data"


def test_builtin_corpus_tokenizer_and_counts(fake_runtime_data):
    resolver = DefaultResolver(ResolveOptions(data_root=fake_runtime_data))
    code = resolver.source("builtin://code")
    assert code.locked["type"] == "builtin"
    assert code.locked["files"] == {"data.array_record": {"sha256": sha(b"code"), "size": 4}}
    assert code.locked["digest"] == files_digest(code.locked["files"])  # the manifest digest, same rule
    bpe = resolver.tokenizer("builtin://bpe", 512)
    assert bpe.locked["digest"] == sha(b"bpe512") and bpe.locked["trained_on"].keys() == {"builtin://code", "builtin://text"}
    assert resolver.token_count("builtin://code", code.locked, "builtin://bpe", 512, bpe.locked) == 28
    assert "install_corpora" in resolver.source("builtin://broken").unresolved
    assert "unknown built-in tokenizer" in resolver.tokenizer("builtin://wordpiece", 512).unresolved


def test_a_corpus_that_no_longer_matches_its_manifest_is_unresolved(fake_runtime_data):
    data = BuiltinData(fake_runtime_data, log=lambda message: None)
    data.corpus("code")
    (fake_runtime_data / "corpora" / "code" / "data.array_record").write_bytes(b"tampered")
    assert "does not match its manifest" in BuiltinData(fake_runtime_data, lambda m: None).corpus("code").unresolved


# --------------------------------------------------------------------------- environment


def test_runtime_versions_and_numerics_never_import_jax():
    probe = ("import sys, json; from compiler.environment import runtime_versions, numerics_facts;"
             "v = runtime_versions(); n = numerics_facts();"
             "print(json.dumps([v, sorted(m for m in ('jax', 'jaxlib', 'flax', 'optax', 'grain') if m in sys.modules)]))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    versions, heavy = json.loads(result.stdout)
    assert heavy == []
    assert set(versions) == {"python", *environment.RUNTIME_PACKAGES}
    assert versions["python"].count(".") == 2


def test_cpu_isa_flags_from_cpuinfo():
    text = "processor : 0\nflags : fpu sse4_2 avx avx2 fma something_else\n\nprocessor : 1\nflags : fpu sse4_2\n"
    assert environment.cpu_isa_flags(text) == {"sse4_2", "avx", "avx2", "fma"}
    assert environment.cpu_isa_flags("Features : fp asimd sve\n") == {"asimd", "sve"}


def test_numerics_come_from_the_runtime_per_mesh(monkeypatch):
    from compiler.spec import MeshSpec

    seen = []
    fake = types.ModuleType("runtime.numerics")
    fake.numerics_facts = lambda mesh: seen.append(mesh) or {"bits": {"flags": ("--x",)}, "host": {"isa": {"avx2"}}}
    monkeypatch.setitem(sys.modules, "runtime.numerics", fake)
    mesh = MeshSpec(accelerator="tpu-v5e", chips=8, axes={"data": 8})
    assert environment.numerics_facts(mesh) == {"bits": {"flags": ["--x"]}, "host": {"isa": ["avx2"]}}
    assert seen == [mesh]
    assert environment.hashed_numerics(environment.numerics_facts(mesh)) == {"flags": ["--x"]}
    assert environment.mesh_key(mesh) == "tpu-v5e chips=8 data=8 fsdp=1 tensor=1"
    assert environment.mesh_key(MeshSpec()) == "cpu chips=1 data=1 fsdp=1 tensor=1"


def test_fallback_numerics_hash_cpu_facts_only_for_cpu_meshes():
    from compiler.spec import MeshSpec

    cpu = environment.fallback_numerics_facts(MeshSpec())
    tpu = environment.fallback_numerics_facts(MeshSpec(accelerator="tpu-v4", chips=4, axes={"data": 4}))
    assert "cpu_isa" in cpu["bits"] and "cpu_isa" not in tpu["bits"] and "cpu_isa" in tpu["host"]
