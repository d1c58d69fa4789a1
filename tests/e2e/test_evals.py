"""Evals end to end through the real CLI: built after each run, never twice, same bytes across tokenizers, replayed.

Two 10-step runs that differ in vocabulary size, so each has its own BPE
tokenizer (builtin://bpe?vocab_size=N), judged on the held-out split of
builtin://code and on the shipped multiple-choice task.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

DATA_ROOT = REPO / ".runix" / "data"
SPEC = """\
runs:
  - name: small-vocab
    model: {preset: tiny, vocab_size: 2048}
    batch: {sequences: 8, sequence_length: 128}
    steps: 10
    checkpoint: {every: 5, keep: 2, digest_every: 5}
    data:
      sources:
        code: {uri: "builtin://code", role: code, share: 0.5, max_repeats: 8}
        text: {uri: "builtin://text", role: text, share: 0.5, max_repeats: 8}
    schedule:
      phases:
        - {kind: warmup, length: 2, peak: 3e-3}
        - {kind: cosine, floor: 3e-4}
    evals:
      every: 5
      max_bytes: 8K
      sets:
        code: {kind: heldout, uri: "builtin://code", role: code}
        next-line: {kind: choice, uri: "evals/python_next_line.jsonl", max_items: 16}
  - name: large-vocab
    extends: small-vocab
    model: {preset: tiny, vocab_size: 4096}   # why: another tokenizer, the same eval bytes
"""


def runix(*args, timeout=900):
    return run_cli(*args, timeout=timeout)


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evals")
    spec, lock, store = folder / "vocab.yaml", folder / "vocab.lock.json", folder / "store"
    spec.write_text(SPEC)
    result = runix("lock", spec, "--lockfile", lock, "--data-root", DATA_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    result = runix("launch", spec, "--lockfile", lock, "--data-root", DATA_ROOT, "--store", store)
    assert result.returncode == 0, result.stdout + result.stderr
    return spec, lock, store, result.stdout


def evals_of(store: Path) -> dict[str, tuple[dict, dict]]:
    out = {}
    for folder in sorted((store / "evals").iterdir()):
        if (folder / "COMPLETE.json").is_file():
            record = json.loads((folder / "eval.json").read_text())
            out[record["name"]] = (record, json.loads((folder / "result.json").read_text()))
    return out


def test_launch_builds_every_eval_after_its_run(launched):
    _, _, store, out = launched
    evals = evals_of(store)
    assert sorted(evals) == sorted(f"{run}.{s}.{step}" for run in ("small-vocab", "large-vocab")
                                   for s in ("code", "next-line") for step in (5, 10))
    assert "8 to build" in out and "held-out evals" in out
    for record, result in evals.values():
        assert record["document"]["run"] in {p.name[:64] for p in store.iterdir() if p.name[:1].isalnum()}
        if result["kind"] == "choice":
            assert result["items"] == 16 and 0 <= result["acc"] <= 1 and 0 <= result["acc_norm"] <= 1


def test_bits_per_byte_are_over_the_same_bytes_under_two_tokenizers(launched):
    evals = evals_of(launched[2])
    small, large = evals["small-vocab.code.10"][1], evals["large-vocab.code.10"][1]
    assert small["bytes"] == large["bytes"] and small["bytes_sha256"] == large["bytes_sha256"]
    assert small["bytes"] <= 8 * 1024 and small["tokens"] > large["tokens"]  # a smaller vocabulary, more tokens
    assert evals["small-vocab.code.10"][0]["document"]["tokenizer"] != evals["large-vocab.code.10"][0]["document"]["tokenizer"]
    for result in (small, large):
        assert result["bits_per_byte"] == pytest.approx(result["nll_sum"] / math.log(2) / result["bytes"], rel=1e-12)
        assert result["loss_per_token"] == pytest.approx(result["nll_sum"] / result["tokens"], rel=1e-12)


def test_relaunch_and_eval_build_no_eval_twice(launched):
    spec, lock, store, _ = launched
    before = {p: p.stat().st_mtime_ns for p in (store / "evals").rglob("result.json")}
    result = runix("launch", spec, "--lockfile", lock, "--data-root", DATA_ROOT, "--store", store)
    assert result.returncode == 0 and "8 already built, 0 to build" in result.stdout, result.stdout
    result = runix("eval", spec, "--lockfile", lock, "--data-root", DATA_ROOT, "--store", store)
    assert result.returncode == 0 and "0 to build" in result.stdout
    assert "small-vocab" in result.stdout and "*" in result.stdout  # the table, best marked
    assert {p: p.stat().st_mtime_ns for p in (store / "evals").rglob("result.json")} == before


def test_replay_recomputes_the_evals_bit_exactly_and_verify_finds_tampering(launched):
    _, _, store, _ = launched
    evals = evals_of(store)
    run_hash = evals["large-vocab.code.10"][0]["document"]["run"]
    result = runix("replay", run_hash[:12], "--store", store, "--data-root", DATA_ROOT, "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("bit-exact") == 1 + 4  # the run, then each of its 4 evals
    [folder] = [p for p in (store / "evals").iterdir() if p.name.endswith("large-vocab.code.10")]
    original = (folder / "result.json").read_bytes()
    (folder / "result.json").write_bytes(original.replace(b'"bits_per_byte": ', b'"bits_per_byte": 1'))
    try:
        result = runix("store", "verify", "--all", "--store", store)
        assert result.returncode == 1 and "TAMPERED eval" in result.stdout and "result.json" in result.stdout
    finally:
        (folder / "result.json").write_bytes(original)
