"""The Beam tokenization pipeline gives the in-process shard's bytes, for 1 and 2 DirectRunner worker processes."""

from __future__ import annotations

import gzip
import json
import shlex

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from compiler.resolve_inputs import resolve_path
from dataprep.beam_tokenize import build_shard_on_beam, dataflow_options, direct_options, render_options
from dataprep.external import SourceIntegrityError, build_external_shard
from dataprep.readers import ReaderOptions
from dataprep.user_tokenizer import fetch_tokenizer
from tests.tokenizer_fixture import WORDS, write_tokenizer_json

DATA_FILES = ("tokens.npy", "offsets.npy", "shard.json")


def words(seed: int, n: int) -> str:
    return " ".join(np.random.default_rng(seed).choice(WORDS, size=n))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Six files of three formats under one folder, locked by the real resolver; a user tokenizer."""
    root = tmp_path_factory.mktemp("beam")
    folder = root / "corpus"
    folder.mkdir()
    for i in range(3):
        lines = "".join(json.dumps({"text": words(10 * i + j, 25)}) + "\n" for j in range(7))
        (folder / f"part-{i}.jsonl.zst").write_bytes(zstandard.compress(lines.encode()))
    pq.write_table(pa.table({"text": [words(100 + j, 30) for j in range(9)]}), folder / "part-3.parquet",
                   row_group_size=4)
    (folder / "part-4.jsonl.gz").write_bytes(gzip.compress(json.dumps({"text": words(200, 40)}).encode(), mtime=0))
    (folder / "part-5.txt").write_text(words(300, 60))
    locked = resolve_path(str(folder)).locked
    assert locked is not None and len(locked["files"]) == 6
    tokenizer_file = write_tokenizer_json(root / "tokenizer.json")
    return root, str(folder), locked, tokenizer_file


def shard_bytes(shard) -> dict[str, bytes]:
    return {name: (shard.path / name).read_bytes() for name in DATA_FILES}


def test_beam_shards_are_byte_identical_for_1_and_2_worker_processes(source, tmp_path):
    root, uri, locked, tokenizer_file = source
    artifacts = {}
    for label in ("reference", "beam-1", "beam-2"):
        data_root = tmp_path / label
        artifact = fetch_tokenizer(str(tokenizer_file), data_root)
        if label == "reference":
            shard = build_external_shard("corpus", uri, locked, artifact, data_root)
        else:
            workers = int(label[-1])
            shard = build_shard_on_beam("corpus", uri, locked, artifact, data_root,
                                        pipeline_args=direct_options(workers, multi_process=True))
        artifacts[label] = shard
    reference = shard_bytes(artifacts["reference"])
    assert artifacts["reference"].num_documents == 3 * 7 + 9 + 1 + 1
    for label in ("beam-1", "beam-2"):
        assert shard_bytes(artifacts[label]) == reference, label
        assert artifacts[label].path.name == artifacts["reference"].path.name  # the same content address
        assert not list((tmp_path / label).glob(".beam-*"))  # the pieces are gone


def test_beam_reports_a_corrupt_file_naming_it(source, tmp_path):
    root, _, _, tokenizer_file = source
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps({"text": "fine"}) + "\n")
    (folder / "b.parquet").write_bytes(b"PAR1 not parquet")
    locked = resolve_path(str(folder)).locked
    artifact = fetch_tokenizer(str(tokenizer_file), tmp_path / "data")
    with pytest.raises(SourceIntegrityError, match=r"b.parquet: not a readable parquet file") as error:
        build_shard_on_beam("bad", str(folder), locked, artifact, tmp_path / "data",
                            pipeline_args=direct_options(1, multi_process=False))
    assert "source bad" in str(error.value) and "while running" not in str(error.value)
    assert [p for p in (tmp_path / "data" / "shards").iterdir() if not p.name.startswith(".")] == []  # nothing published
    with pytest.raises(SourceIntegrityError, match="b.parquet"):
        build_external_shard("bad", str(folder), locked, artifact, tmp_path / "data")


def test_dataflow_options_are_standard_beam_options():
    options = dataflow_options(project="my-proj", region="us-central1", temp_location="gs://bucket/runix",
                               num_workers=8, job_name="tokenize-web")
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions, WorkerOptions

    parsed = PipelineOptions(options)
    assert parsed.view_as(StandardOptions).runner == "DataflowRunner"
    cloud = parsed.view_as(GoogleCloudOptions)
    assert (cloud.project, cloud.region, cloud.temp_location) == ("my-proj", "us-central1", "gs://bucket/runix/temp")
    assert cloud.job_name == "tokenize-web" and parsed.view_as(WorkerOptions).num_workers == 8
    assert shlex.split(render_options(options)) == options
    assert ReaderOptions().key()["format"] == "auto"
