"""Tokenization is a store derivation: hosts that share only a store URL tokenize a source once.

Each "host" here is a process with its own data root (nothing shared on
disk but the store). The store is a local folder or a real S3 server (moto
on 127.0.0.1, through s3fs, as a user's bucket). Counting is by every data
root's tokenizations log (dataprep.shards.tokenizations): one line per
tokenization ever run there.

Through the CLI: `runix lock` tokenizes a file source into the store, and
`runix launch` of two runs over it on another data root reads only the
shard: no second tokenization anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compiler.resolve_inputs import resolve_path
from dataprep.shards import tokenizations
from tests.conftest import REPO, run_cli
from tests.tokenizer_fixture import WORDS, write_tokenizer_json

DERIVE = """
import json, sys
from compiler.store import open_store
from dataprep.external import build_external_shard
from dataprep.user_tokenizer import fetch_tokenizer
uri, locked, tokenizer, root, store = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
shard = build_external_shard("docs", uri, locked, fetch_tokenizer(tokenizer, root), root, store=open_store(store))
print(json.dumps([shard.path.name, shard.digest, shard.num_tokens]))
"""


def make_source(folder: Path) -> tuple[Path, dict, Path]:
    corpus = folder / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": " ".join(WORDS[i % len(WORDS):] * 30)}) + "\n" for i in range(120)))
    return corpus, resolve_path(str(corpus)).locked, write_tokenizer_json(folder / "tokenizer.json")


def start_host(corpus: Path, locked: dict, tokenizer: Path, root: Path, store: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DERIVE, str(corpus), json.dumps(locked), str(tokenizer), str(root),
                             store], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})


def finish(process: subprocess.Popen) -> list:
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(params=["local", "s3"])
def store_url(request, tmp_path) -> tuple[str, dict]:
    """(store URL, environment a host needs to reach it)."""
    if request.param == "local":
        return str(tmp_path / "store"), {}
    return request.getfixturevalue("s3_store_url"), request.getfixturevalue("s3_env")


def test_three_hosts_at_once_tokenize_a_source_once_and_a_fourth_only_downloads(tmp_path, store_url):
    from compiler.store import open_store
    from compiler.store import shards as stored

    url, env = store_url
    corpus, locked, tokenizer = make_source(tmp_path)
    roots = [tmp_path / f"host{i}" for i in range(4)]
    hosts = [start_host(corpus, locked, tokenizer, root, url, env) for root in roots[:3]]
    results = [finish(host) for host in hosts]
    assert len({tuple(r) for r in results}) == 1  # one shard, the same bytes on every host
    assert sum(len(tokenizations(root)) for root in roots[:3]) == 1
    key = results[0][0]
    assert stored.published_keys(open_store(url)) == [key]
    assert finish(start_host(corpus, locked, tokenizer, roots[3], url, env)) == results[0]
    assert tokenizations(roots[3]) == []
    for root in roots:  # each host reads its own copy of the published shard
        assert (root / "shards" / key / "tokens.npy").is_file()


def test_a_damaged_shard_in_the_store_is_refused_naming_the_file(tmp_path, s3_store_url, s3_env):
    from compiler.store import open_store
    from compiler.store.errors import StoreError
    from dataprep.external import build_external_shard
    from dataprep.user_tokenizer import fetch_tokenizer

    corpus, locked, tokenizer = make_source(tmp_path)
    [key, _, _] = finish(start_host(corpus, locked, tokenizer, tmp_path / "a", s3_store_url, s3_env))
    store = open_store(s3_store_url)
    tokens = f"{store.root}/.shards/{key}/tokens.npy"
    store.fs.pipe_file(tokens, store.fs.cat_file(tokens)[:-2])
    root = tmp_path / "b"
    with pytest.raises(StoreError, match=r"tokens.npy: has .* the store entry is damaged"):
        build_external_shard("docs", str(corpus), locked, fetch_tokenizer(str(tokenizer), root), root, store=store)
    assert not (root / "shards" / key).exists() and tokenizations(root) == []


def spec_text(corpus: Path, tokenizer: Path) -> str:
    return json.dumps({"runs": [{
        "name": "one-source",
        "model": {"vocab_size": 320, "d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64},
        "batch": {"sequences": 2, "sequence_length": 32},
        "steps": 2,
        "init": {"kind": "scratch", "seed": 0},
        "data": {"seed": 0, "tokenizer": f"file://{tokenizer}", "sources": {
            "docs": {"uri": str(corpus), "role": "text", "tokens": 128, "max_repeats": 4}}},
        "schedule": {"phases": [{"kind": "constant", "value": 1e-3}]},
        "mesh": {"accelerator": "cpu", "chips": 1},
        "checkpoint": {"every": 2, "keep": 1, "digest_every": 1},
    }, {"name": "one-source-seed1", "extends": "one-source", "init": {"kind": "scratch", "seed": 1}}]})


def test_lock_tokenizes_into_the_store_and_two_runs_on_another_host_read_only_shards(tmp_path):
    from compiler.store import open_store
    from compiler.store import shards as stored

    corpus, _, tokenizer = make_source(tmp_path)
    (tmp_path / "spec.yaml").write_text(spec_text(corpus, tokenizer))
    store, lock_root, build_root = tmp_path / "store", tmp_path / "lock-host", tmp_path / "build-host"
    locked = run_cli("lock", tmp_path / "spec.yaml", "--lockfile", tmp_path / "x.lock.json", "--store", store,
                     "--data-root", lock_root, timeout=300)
    assert locked.returncode == 0, locked.stdout + locked.stderr
    [tokenized] = tokenizations(lock_root)  # `runix lock` tokenized the source, once
    [key] = stored.published_keys(open_store(str(store)))
    assert tokenized["shard"] == key
    lock = json.loads((tmp_path / "x.lock.json").read_text())
    assert list(lock["sources"][str(corpus)]["locked"]["token_counts"].values()) == [tokenized["tokens"]]

    launched = run_cli("launch", tmp_path / "spec.yaml", "--store", store, "--lockfile", tmp_path / "x.lock.json",
                       "--data-root", build_root, timeout=600)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    built = sorted(p.name.split("-", 1)[1] for p in store.iterdir() if (p / "COMPLETE.json").is_file())
    assert built == ["one-source", "one-source-seed1"]
    assert tokenizations(build_root) == [] and len(tokenizations(lock_root)) == 1  # one tokenization in all
    assert (build_root / "shards" / key / "tokens.npy").is_file()


def test_lock_refuses_a_corrupt_file_and_a_missing_field_at_once_writing_nothing(tmp_path):
    import zstandard

    corpus, _, tokenizer = make_source(tmp_path)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not a parquet file PAR1")
    lines = "".join(json.dumps({"text": "def f(): return 1"}) + "\n" for _ in range(4))
    (tmp_path / "code.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines.encode()))
    spec = json.loads(spec_text(corpus, tokenizer))
    spec["runs"][0]["data"]["sources"] = {
        "web": {"uri": str(tmp_path / "bad.parquet"), "role": "text", "tokens": 64, "max_repeats": 4},
        "code": {"uri": str(tmp_path / "code.jsonl.zst"), "role": "code", "tokens": 64, "max_repeats": 4,
                 "text_field": "body"}}
    (tmp_path / "spec.yaml").write_text(json.dumps(spec))
    result = run_cli("lock", tmp_path / "spec.yaml", "--lockfile", tmp_path / "x.lock.json", "--store",
                     tmp_path / "store", "--data-root", tmp_path / "data", timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    err = result.stderr
    assert "runs[one-source].data.sources.web" in err and "bad.parquet" in err
    assert "runs[one-source].data.sources.code" in err and "code.jsonl.zst line 1 has no string field 'body'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.lock.json").exists() and not (tmp_path / "store").exists()
    assert tokenizations(tmp_path / "data") == []
