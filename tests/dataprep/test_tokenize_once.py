"""Processes that need the same shard at once tokenize it once: the first builds, the others wait and open it."""

from __future__ import annotations

import json
import subprocess
import sys

from compiler.resolve_inputs import resolve_path
from dataprep.shards import tokenizations
from tests.conftest import REPO
from tests.tokenizer_fixture import WORDS, write_tokenizer_json

BUILD = """
import json, sys
from dataprep.external import build_external_shard
from dataprep.user_tokenizer import fetch_tokenizer
uri, locked, tokenizer, root = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
shard = build_external_shard("docs", uri, locked, fetch_tokenizer(tokenizer, root), root)
print(json.dumps([shard.path.name, shard.digest]))
"""


def test_three_processes_at_once_tokenize_one_source_once(tmp_path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": " ".join(WORDS[i:] * 40)}) + "\n" for i in range(200)))
    locked = resolve_path(str(corpus)).locked
    tokenizer = write_tokenizer_json(tmp_path / "tokenizer.json")
    root = tmp_path / "data"
    processes = [subprocess.Popen([sys.executable, "-c", BUILD, str(corpus), json.dumps(locked), str(tokenizer),
                                   str(root)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert len({tuple(o) for o in outputs}) == 1  # one shard, the same bytes for all three
    assert len(tokenizations(root)) == 1
