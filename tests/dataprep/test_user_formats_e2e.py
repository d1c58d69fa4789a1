"""The user's own data and tokenizer, through the real CLI: parquet + .jsonl.zst + tokenizer.json.

Everything is made here with the formats' own libraries (pyarrow,
zstandard, HF tokenizers): a folder of two parquet shards read by glob,
a zstd-compressed JSON-lines file whose text sits under another key
(`text_field: body`), and a byte-level BPE saved as tokenizer.json.
`runix lock` pins all three by sha256 and tokenizes each source once into
the store, `runix launch` trains on those shards (no built-in corpus is
prepared or tokenized), and
`runix replay` retrains bit-exactly. A tokenizer larger than the model's
vocabulary is refused by `runix lock` with exit 2, naming both numbers, and
no lockfile is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tests.conftest import run_cli

STEPS, SEQUENCES, LENGTH = 4, 4, 32
BUDGETS = {"web": 256, "code": 256}  # tokens; add up to STEPS × SEQUENCES × LENGTH
WORDS = ["data", "model", "token", "shard", "lock", "budget", "mixture", "source", "parquet", "zstd", "the", "a"]


def words(seed: int, n: int) -> str:
    return " ".join(np.random.default_rng(seed).choice(WORDS, size=n))


def make_tokenizer(path: Path, vocab_size: int, texts: list[str]) -> None:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.save(str(path))


def spec_text(root: Path, vocab_size: int, tokenizer: Path) -> str:
    return json.dumps({"runs": [{
        "name": "own-data",
        "model": {"vocab_size": vocab_size, "d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64},
        "batch": {"sequences": SEQUENCES, "sequence_length": LENGTH},
        "steps": STEPS,
        "init": {"kind": "scratch", "seed": 0},
        "data": {"seed": 0, "tokenizer": f"file://{tokenizer}", "sources": {
            "web": {"uri": str(root / "web" / "*.parquet"), "role": "text", "tokens": BUDGETS["web"], "max_repeats": 20,
                    "format": "parquet"},
            "code": {"uri": str(root / "code.jsonl.zst"), "role": "code", "tokens": BUDGETS["code"],
                     "text_field": "body", "max_repeats": 20},
        }},
        "schedule": {"phases": [{"kind": "warmup", "length": 2, "peak": 3e-3}, {"kind": "cosine", "floor": 3e-4}]},
        "mesh": {"accelerator": "cpu", "chips": 1},
        "checkpoint": {"every": 2, "keep": 1, "digest_every": 2},
    }, {"name": "own-data-seed1", "extends": "own-data", "init": {"kind": "scratch", "seed": 1}}]})


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("own-data")
    (root / "web").mkdir()
    for shard in range(2):
        texts = [words(100 * shard + i, 40) for i in range(6)]
        pq.write_table(pa.table({"url": [f"u{i}" for i in range(6)], "text": texts}),
                       root / "web" / f"part-{shard:05d}.parquet", row_group_size=2)
    lines = "".join(json.dumps({"body": "def f():\n    return " + words(500 + i, 30), "lang": "py"}) + "\n"
                    for i in range(8))
    (root / "code.jsonl.zst").write_bytes(zstandard.ZstdCompressor(level=3).compress(lines.encode()))
    make_tokenizer(root / "tokenizer.json", 300, [words(i, 50) for i in range(50)] + ["def f():\n    return"])
    (root / "spec.yaml").write_text(spec_text(root, 320, root / "tokenizer.json"))
    return root


@pytest.fixture(scope="module")
def locked(project) -> Path:
    result = run_cli("lock", project / "spec.yaml", "--lockfile", project / "x.lock.json",
                     "--data-root", project / "data", "--store", project / "store", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return project / "x.lock.json"


@pytest.fixture(scope="module")
def entry(project, locked) -> Path:
    result = run_cli("launch", project / "spec.yaml", "--store", project / "store", "--lockfile", locked,
                     "--data-root", project / "data", timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    [found] = [p for p in (project / "store").iterdir() if p.name.endswith("-own-data")]
    assert [p for p in (project / "store").iterdir() if p.name.endswith("-own-data-seed1")]
    return found


def test_the_lock_pins_the_files_and_the_tokenizer(project, locked):
    lock = json.loads(locked.read_text())
    web = lock["sources"][str(project / "web" / "*.parquet")]["locked"]
    assert sorted(web["files"]) == ["part-00000.parquet", "part-00001.parquet"]
    [tokenizer] = lock["tokenizers"].values()
    import hashlib

    assert tokenizer["locked"]["digest"] == hashlib.sha256((project / "tokenizer.json").read_bytes()).hexdigest()
    assert tokenizer["locked"]["vocab_size"] == 300 and tokenizer["locked"]["eos_token"] == "<|endoftext|>"


def test_launch_trains_with_the_users_tokenizer_and_replays_bit_exactly(project, entry):
    record = json.loads((entry / "digest.json").read_text())
    assert record["complete"] and len(record["losses"]) == STEPS
    result = run_cli("replay", entry.name.split("-")[0], "--store", project / "store", "--data-root",
                     project / "data", "--no-progress", timeout=400)
    assert result.returncode == 0 and "bit-exact" in result.stdout, result.stdout + result.stderr
    # Only the user's tokenizer was used: no built-in corpus was prepared, no BPE trained.
    assert not (project / "data" / "corpora").exists()
    assert [p.name.split("-", 1)[1] for p in (project / "data" / "tokenizers").iterdir()
            if not p.name.startswith(".")] == ["user"]


def test_two_runs_and_a_replay_over_one_source_tokenize_it_once(project, entry):
    from dataprep.shards import tokenizations

    test_launch_trains_with_the_users_tokenizer_and_replays_bit_exactly(project, entry)  # a third process
    from compiler.store import open_store
    from compiler.store.shards import published_keys

    log = tokenizations(project / "data")
    assert sorted(item["source"] for item in log) == sorted([str(project / "web" / "*.parquet"),
                                                            str(project / "code.jsonl.zst")])
    # `runix lock` tokenized both and published them into the store; builds and the replay tokenized nothing.
    assert sorted(item["shard"] for item in log) == published_keys(open_store(str(project / "store")))


def test_the_shards_hold_the_users_tokens(project, entry):
    from compiler.spec import RunSpec
    from runtime import data_source

    spec = RunSpec.model_validate(json.loads((entry / "spec.json").read_text())["spec"])
    batch_fn = data_source.for_run(spec, project / "data", lock_entries=data_source.read_lock_entries(entry))
    shards = {source.name: shard for source, shard in zip(batch_fn.sources, batch_fn.shards)}
    assert shards["web"].num_documents == 12 and shards["code"].num_documents == 8
    tokenizer = Tokenizer.from_file(str(project / "tokenizer.json"))
    first = shards["code"].tokens[: shards["code"].offsets[1] - 1].tolist()
    assert tokenizer.decode(first).startswith("def f():\n    return ")
    assert shards["code"].eos_id == tokenizer.token_to_id("<|endoftext|>")


def test_a_tokenizer_larger_than_the_model_is_refused_by_lock(project, tmp_path):
    (tmp_path / "spec.yaml").write_text(spec_text(project, 256, project / "tokenizer.json"))
    result = run_cli("lock", tmp_path / "spec.yaml", "--lockfile", tmp_path / "y.lock.json",
                     "--data-root", project / "data", timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "vocabulary of 300 tokens but model.vocab_size is 256" in result.stderr
    assert "model.vocab_size" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "y.lock.json").exists()


def test_a_missing_field_stops_the_trainer_naming_file_and_field(project, entry, tmp_path, capsys):
    from runtime.__main__ import main

    bad = tmp_path / "run"
    bad.mkdir()
    for name in ("spec.json", "lock.json"):
        (bad / name).write_bytes((entry / name).read_bytes())
    spec = json.loads((bad / "spec.json").read_text())
    spec["spec"]["data"]["sources"]["code"]["text_field"] = "content"
    (bad / "spec.json").write_text(json.dumps(spec))
    code = main(["--run-dir", str(bad), "--data-root", str(project / "data"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "code.jsonl.zst line 1 has no string field 'content'" in err and "Traceback" not in err
    assert not (bad / "checkpoints").exists()


def test_prepare_on_beam_finds_the_shards_the_launch_used(project, entry):
    from dataprep.shards import tokenizations

    before = len(tokenizations(project / "data"))
    result = run_cli("prepare", project / "spec.yaml", "--lockfile", project / "x.lock.json",
                     "--data-root", project / "data", "--workers", "2", "--store", project / "store", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "prepared 2 shard(s)" in result.stdout and "(0 published now)" in result.stdout  # lock published them
    assert len(tokenizations(project / "data")) == before  # built once already: nothing tokenized again


def test_prepare_renders_dataflow_options_without_running(project):
    result = run_cli("prepare", project / "spec.yaml", "--runner", "dataflow", "--project", "p", "--region",
                     "europe-west4", "--temp-location", "gs://b/runix", "--stage-url", "gs://b/pieces",
                     "--workers", "16", "--render-only", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--runner=DataflowRunner" in result.stdout and "--num_workers=16" in result.stdout
    assert "--region=europe-west4" in result.stdout and "nothing was run" in result.stdout
    missing = run_cli("prepare", project / "spec.yaml", "--runner", "dataflow", "--render-only", timeout=120)
    assert missing.returncode == 2 and "--project" in missing.stderr
