"""A source enters the hash by its content digest and reader options, not its URI.

The same bytes at another path (or bucket) give the same run hashes, and
`runix diff` says only the location changed; changed bytes or another
`text_field` change the hash.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compiler.canonical import hash_document
from compiler.specset import load_spec_set
from tests.conftest import run_cli
from tests.tokenizer_fixture import write_tokenizer_json


def spec(data: Path, tokenizer: Path, **source) -> str:
    return json.dumps({"runs": [{
        "name": "moved",
        "model": {"vocab_size": 512, "d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64},
        "batch": {"sequences": 2, "sequence_length": 16},
        "steps": 2,
        "data": {"tokenizer": str(tokenizer), "sources": {
            "web": {"uri": str(data), "role": "text", "tokens": 64, "max_repeats": 100, **source}}},
        "schedule": {"phases": [{"kind": "constant", "length": 2, "value": 1e-3}]},
        "mesh": {"accelerator": "cpu", "chips": 1},
    }]})


def locked_hash(folder: Path, text: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text("")
    (folder / "spec.yaml").write_text(text)
    result = run_cli("lock", folder / "spec.yaml", "--no-token-counts", cwd=folder, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = run_cli("hash", folder / "spec.yaml", cwd=folder, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[0]


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    root = tmp_path_factory.mktemp("moved")
    first = root / "bucket-a" / "web"
    first.mkdir(parents=True)
    for i in range(2):
        pq.write_table(pa.table({"text": [f"document {i} {j} " * 5 for j in range(4)]}), first / f"p{i}.parquet")
    second = root / "bucket-b" / "copies" / "web"
    shutil.copytree(first, second)
    tokenizer = write_tokenizer_json(root / "tok-a" / "tokenizer.json")
    moved_tokenizer = root / "tok-b" / "renamed.json"
    moved_tokenizer.parent.mkdir()
    shutil.copy(tokenizer, moved_tokenizer)
    a = locked_hash(root / "project-a", spec(first, tokenizer))
    b = locked_hash(root / "project-b", spec(second, moved_tokenizer))
    return root, first, second, tokenizer, moved_tokenizer, a, b


def test_the_same_bytes_moved_keep_every_hash(moved):
    *_, a, b = moved
    assert a == b


def test_changed_bytes_or_reader_options_change_the_hash(moved, tmp_path):
    root, first, _, tokenizer, _, a, _ = moved
    changed = tmp_path / "web"
    shutil.copytree(first, changed)
    pq.write_table(pa.table({"text": ["another document"] * 4}), changed / "p1.parquet")
    assert locked_hash(tmp_path / "p1", spec(changed, tokenizer)) != a
    assert locked_hash(tmp_path / "p2", spec(first, tokenizer, text_field="content")) != a


def test_diff_says_only_the_location_changed(moved):
    root, *_ = moved
    result = run_cli("diff", root / "project-a" / "spec.yaml", root / "project-b" / "spec.yaml", cwd=root, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "data.sources.web.uri" in out and "data.tokenizer" in out
    assert "location only" in out and "changes the hash" not in out


def test_unresolved_and_tfds_sources_keep_their_uri_in_the_hash(tmp_path):
    (path := tmp_path / "s.yaml").write_text(spec(Path("/nowhere"), Path("/tok.json")))
    run = load_spec_set([path]).runs[0]
    unresolved = {"sources": {"web": {"unresolved": True}}, "tokenizer": {"unresolved": True}}
    assert hash_document(run.spec, None, unresolved)["run"]["data"]["sources"]["web"]["uri"] == "/nowhere"
    locked = {"sources": {"web": {"digest": "0" * 64}}, "tokenizer": {"digest": "1" * 64}}
    document = hash_document(run.spec, None, locked)
    assert "uri" not in document["run"]["data"]["sources"]["web"] and "tokenizer" not in document["run"]["data"]
    (path := tmp_path / "t.yaml").write_text(spec(Path("x"), Path("/tok.json")).replace('"x"', '"tfds://c4/en:3.0.1/train[:10%]"'))
    run = load_spec_set([path]).runs[0]
    assert hash_document(run.spec, None, locked)["run"]["data"]["sources"]["web"]["uri"].startswith("tfds://")
