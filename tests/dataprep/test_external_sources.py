"""Runs that train on local files (fsspec paths) and a local TFDS dataset, through the real CLI.

A folder of .txt/.md/.py files (one document each), a .jsonl file (one
document per line), a tiny TFDS array_record dataset (built the way the
built-in corpora are, dataprep.corpus_builder) and builtin://code in one
mixture: `runix lock` pins the files and tokenizes them into the store,
`runix launch` trains on those shards, every source gives exactly its
budget, and a file changed after locking stops a trainer that has to build
its shard with exit 2 naming it (a finished shard is the locked bytes; a run
reads only it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, run_cli

DATA_ROOT = REPO / ".runix" / "data"
STEPS, SEQUENCES, LENGTH = 6, 4, 32
BUDGETS = {"code": 192, "notes": 192, "records": 192, "tfds": 192}  # tokens; add up to STEPS × SEQUENCES × LENGTH


def _words(seed: int, n: int) -> str:
    rng = np.random.default_rng(seed)
    vocab = ["data", "model", "token", "shard", "lock", "budget", "mixture", "source", "file", "train", "the", "a"]
    return " ".join(rng.choice(vocab, size=n))


def tfds_env(root: Path) -> dict[str, str]:
    return {"TFDS_DATA_DIR": str(root / "tfds")}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("external")
    notes = root / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text(_words(0, 300) + "\n")
    (notes / "b.md").write_text("# Notes\n\n" + _words(1, 300) + "\n")
    (notes / "c.py").write_text("def f(x):\n    return x + 1  # " + _words(2, 200) + "\n")
    lines = [json.dumps({"text": _words(10 + i, 60), "id": i}) for i in range(8)]
    (root / "records.jsonl").write_text("\n".join(lines[:4]) + "\n\n" + "\n".join(lines[4:]) + "\n")
    documents = root / "tfds-documents.jsonl"
    documents.write_text("".join(json.dumps({"id": f"d{i}", "text": _words(20 + i, 80)}) + "\n" for i in range(5)))
    built = subprocess.run(
        [sys.executable, "-c", "import sys; from dataprep.corpus_builder import main; sys.exit(main(sys.argv[1:]))",
         "tiny-docs", str(documents), str(root / "tfds")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python", "TFDS_DISABLE_PROGRESS_BAR": "1"})
    assert built.returncode == 0, built.stderr
    spec = {
        "runs": [{
            "name": "external-mix",
            "model": {"vocab_size": 4096, "d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64},
            "batch": {"sequences": SEQUENCES, "sequence_length": LENGTH},
            "steps": STEPS,
            "init": {"kind": "scratch", "seed": 0},
            "data": {"seed": 0, "sources": {
                "code": {"uri": "builtin://code", "role": "code", "tokens": BUDGETS["code"]},
                "notes": {"uri": str(notes), "role": "text", "tokens": BUDGETS["notes"], "max_repeats": 50},
                "records": {"uri": f"file://{root / 'records.jsonl'}", "role": "text", "tokens": BUDGETS["records"],
                            "max_repeats": 50},
                "tfds": {"uri": "tfds://runix_corpus/tiny_docs:1.0.0/train", "role": "text",
                         "tokens": BUDGETS["tfds"], "max_repeats": 50},
            }},
            "schedule": {"phases": [{"kind": "warmup", "length": 2, "peak": 3e-3}, {"kind": "cosine", "floor": 3e-4}]},
            "mesh": {"accelerator": "cpu", "chips": 1},
            "checkpoint": {"every": 3, "keep": 1, "digest_every": 3},
        }],
    }
    (root / "spec.yaml").write_text(json.dumps(spec))  # JSON is YAML
    result = run_cli("lock", root / "spec.yaml", "--lockfile", root / "x.lock.json", "--data-root", DATA_ROOT,
                     "--store", root / "store", timeout=300, env=tfds_env(root))
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture(scope="module")
def entry(files) -> Path:
    store = files / "store"
    result = run_cli("launch", files / "spec.yaml", "--store", store, "--lockfile", files / "x.lock.json",
                     "--data-root", DATA_ROOT, timeout=300, env=tfds_env(files))
    assert result.returncode == 0, result.stdout + result.stderr
    [found] = [p for p in store.iterdir() if p.name.endswith("-external-mix")]
    return found


def test_the_lock_pins_every_file(files):
    lock = json.loads((files / "x.lock.json").read_text())
    notes = lock["sources"][str(files / "notes")]["locked"]
    assert notes["type"] == "files" and sorted(notes["files"]) == ["a.txt", "b.md", "c.py"]
    records = lock["sources"][f"file://{files / 'records.jsonl'}"]["locked"]
    assert sorted(records["files"]) == ["records.jsonl"]
    tfds = lock["sources"]["tfds://runix_corpus/tiny_docs:1.0.0/train"]["locked"]
    assert tfds["type"] == "tfds" and tfds["version"] == "1.0.0" and tfds["files"]


def test_launch_trains_on_local_files(entry):
    assert (entry / "COMPLETE.json").is_file()
    record = json.loads((entry / "digest.json").read_text())
    assert record["complete"] and len(record["losses"]) == STEPS


def test_each_source_gives_its_budget(entry, files, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(files / "tfds"))
    from compiler.spec import RunSpec
    from runtime import data_source

    spec = RunSpec.model_validate(json.loads((entry / "spec.json").read_text())["spec"])
    batch_fn = data_source.for_run(spec, DATA_ROOT, lock_entries=data_source.read_lock_entries(entry))
    names = sorted(spec.data.sources)
    counts = dict.fromkeys(names, 0)
    for step in range(STEPS):
        batch = batch_fn.batch_at(step)
        for source_id in np.asarray(batch["source_ids"]).tolist():
            counts[names[source_id]] += LENGTH
    assert counts == BUDGETS
    # one document per text file, one per non-blank .jsonl line
    shards = {source.name: source.shard for source in batch_fn.sources}
    assert shards["notes"].num_documents == 3 and shards["records"].num_documents == 8
    assert shards["tfds"].num_documents == 5


def tfds_data_file(root: Path) -> Path:
    [found] = (root / "tfds" / "runix_corpus" / "tiny_docs" / "1.0.0").glob("*-train.array_record*")
    return found


def shards_of(locked_digest: str) -> list[Path]:
    """Every shard in the data root made from these locked bytes (under any tokenizer)."""
    return [p.parent for p in (DATA_ROOT / "shards").glob("*/shard.json")
            if json.loads(p.read_text()).get("locked_digest") == locked_digest]


@pytest.mark.parametrize("source, changed", [("notes", lambda root: root / "notes" / "b.md"),
                                             ("tfds", tfds_data_file)], ids=["file", "tfds"])
def test_a_file_changed_after_locking_is_bad_input_when_its_shard_must_be_built(files, entry, tmp_path, monkeypatch,
                                                                                source, changed):
    """A finished shard is the locked bytes tokenized: a run reads only it. Building one checks every file."""
    from compiler.spec import RunSpec
    from runtime import data_source

    monkeypatch.setenv("TFDS_DATA_DIR", str(files / "tfds"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("spec.json", "lock.json"):
        shutil.copy(entry / name, run_dir / name)
    lock = json.loads((run_dir / "lock.json").read_text())
    built = shards_of(lock["sources"][source]["locked"]["digest"])
    assert built
    target = changed(files)
    original = target.read_bytes()
    aside = tmp_path / "aside"
    aside.mkdir()
    target.write_bytes(original + b"one more line\n")
    try:
        spec = RunSpec.model_validate(json.loads((run_dir / "spec.json").read_text())["spec"])
        data_source.for_run(spec, DATA_ROOT, lock_entries=lock)  # the shard exists: the changed file is not read
        for shard in built:
            shard.rename(aside / shard.name)
        result = subprocess.run(
            [sys.executable, "-m", "runtime", "--run-dir", str(run_dir), "--data-root", str(DATA_ROOT),
             "--no-progress"],
            cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, **tfds_env(files)})
    finally:
        target.write_bytes(original)
        for shard in built:
            if (aside / shard.name).exists():
                if shard.exists():
                    shutil.rmtree(shard)
                (aside / shard.name).rename(shard)
    assert result.returncode == 2, result.stderr
    assert f"source {source} " in result.stderr and target.name in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (run_dir / "digest.json").exists()
