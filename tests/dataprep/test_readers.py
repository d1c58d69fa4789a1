"""Each reader of dataprep.readers on files made here with the format's own library."""

from __future__ import annotations

import gzip
import json
import tracemalloc

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import zstandard

from dataprep.readers import ReadError, ReaderOptions, documents, file_format

TEXTS = ["def f():\n    return 1\n", "", "héllo wörld", "x" * 50, "<|endoftext|> is text here"]


def opener(path):
    return lambda: open(path, "rb")


def read(path, name=None, **options):
    return list(documents(opener(path), name or path.name, ReaderOptions(**options)))


def jsonl_bytes(rows):
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@pytest.mark.parametrize("name, expected", [
    ("a.parquet", "parquet"), ("a.pq", "parquet"), ("a.arrow", "arrow"), ("a.feather", "arrow"),
    ("a.jsonl", "jsonl"), ("a.JSONL.gz", "jsonl"), ("a.jsonl.zst", "jsonl"), ("a.ndjson", "jsonl"),
    ("a.array_record", "array_record"), ("a.txt", "text"), ("a.py", "text"), ("a.md.gz", "text"),
])
def test_format_from_the_name(name, expected):
    assert file_format(name, ReaderOptions()) == expected
    assert file_format(name, ReaderOptions(format="text")) == "text"


def test_parquet_reads_the_named_column_in_row_order(tmp_path):
    path = tmp_path / "part-0.parquet"
    pq.write_table(pa.table({"id": list(range(len(TEXTS))), "content": TEXTS}), path, row_group_size=2)
    assert read(path, text_field="content") == [t for t in TEXTS if t]
    with pytest.raises(ReadError, match=r"part-0.parquet: no field 'text' \(has id, content\)"):
        read(path)


def test_parquet_streams_row_groups_with_bounded_memory(tmp_path):
    path = tmp_path / "big.parquet"
    rows = 40_000
    texts = [f"document {i} " + "y" * 200 for i in range(rows)]  # ~8.5 MB of text
    pq.write_table(pa.table({"text": texts}), path, row_group_size=1000)
    tracemalloc.start()
    count = 0
    for text in documents(opener(path), path.name, ReaderOptions()):
        count += 1
        assert text.startswith("document ")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == rows
    assert peak < 3_000_000, f"peak {peak} bytes: the reader held more than a row group"


def test_parquet_null_and_non_string_are_errors_naming_the_row(tmp_path):
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"]}), path)
    with pytest.raises(ReadError, match=r"n.parquet row 1: field 'text' is null"):
        read(path)
    path = tmp_path / "i.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), path)
    with pytest.raises(ReadError, match="field 'text' has type int64, not a string"):
        read(path)


def test_corrupt_parquet_is_a_read_error(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(ReadError, match="bad.parquet: not a readable parquet file"):
        read(path)


@pytest.mark.parametrize("kind", ["file", "stream"])
def test_arrow_ipc_file_and_stream(tmp_path, kind):
    table = pa.table({"text": TEXTS})
    path = tmp_path / f"t.{'arrow' if kind == 'file' else 'ipc'}"
    with pa.OSFile(str(path), "wb") as sink:
        writer = ipc.new_file(sink, table.schema) if kind == "file" else ipc.new_stream(sink, table.schema)
        for batch in table.to_batches(max_chunksize=2):
            writer.write_batch(batch)
        writer.close()
    assert read(path) == [t for t in TEXTS if t]


@pytest.mark.parametrize("suffix, compress", [
    ("", lambda b: b), (".gz", lambda b: gzip.compress(b, mtime=0)), (".zst", lambda b: zstandard.compress(b)),
])
def test_jsonl_plain_gzip_and_zstd(tmp_path, suffix, compress):
    path = tmp_path / f"docs.jsonl{suffix}"
    rows = [{"text": t, "meta": i} for i, t in enumerate(TEXTS)]
    path.write_bytes(compress(jsonl_bytes(rows) + b"\n\n"))
    assert read(path) == [t for t in TEXTS if t]


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(jsonl_bytes([{"text": "a"}, {"body": "b"}]))
    with pytest.raises(ReadError, match=r"d.jsonl line 2 has no string field 'text'"):
        read(path)
    with pytest.raises(ReadError, match=r"d.jsonl line 1 has no string field 'body'"):
        read(path, text_field="body")
    path.write_bytes(b'{"text": "a"}\n{not json\n')
    with pytest.raises(ReadError, match=r"d.jsonl line 2 is not JSON"):
        read(path)
    path.write_bytes(b'{"text": "a"}\n{"text": "\xff"}\n')
    with pytest.raises(ReadError, match=r"d.jsonl line 2 is not UTF-8"):
        read(path)


def test_truncated_zstd_is_a_read_error(tmp_path):
    path = tmp_path / "t.jsonl.zst"
    path.write_bytes(zstandard.compress(jsonl_bytes([{"text": "a" * 1000}] * 50))[:-20])
    with pytest.raises(ReadError, match="t.jsonl.zst"):
        read(path)


def test_text_files_are_one_document_compressed_or_not(tmp_path):
    plain = tmp_path / "a.md"
    plain.write_text("# title\n\nbody\n", encoding="utf-8")
    packed = tmp_path / "b.txt.zst"
    packed.write_bytes(zstandard.compress("zstd body\n".encode()))
    assert read(plain) == ["# title\n\nbody\n"]
    assert read(packed) == ["zstd body\n"]
    binary = tmp_path / "c.bin"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ReadError, match="c.bin is not UTF-8 text"):
        read(binary)


def test_array_record_of_tf_examples(tmp_path):
    from array_record.python.array_record_module import ArrayRecordWriter
    from tensorflow_datasets.proto import tf_example_pb2

    path = tmp_path / "data.array_record"
    writer = ArrayRecordWriter(str(path), "group_size:1")
    for text in TEXTS:
        example = tf_example_pb2.Example()
        example.features.feature["text"].bytes_list.value.append(text.encode())
        writer.write(example.SerializeToString())
    writer.close()
    assert read(path) == [t for t in TEXTS if t]
    with pytest.raises(ReadError, match=r"data.array_record record 0: no feature 'body' \(has text\)"):
        read(path, text_field="body")


def test_compressed_random_access_formats_are_refused(tmp_path):
    path = tmp_path / "x.parquet.gz"
    path.write_bytes(gzip.compress(b"x"))
    with pytest.raises(ReadError, match="cannot be gzip-compressed"):
        read(path)


def test_unknown_format_option():
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        ReaderOptions(format="csv")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "bc", "\n", "\r", "\r\n", " ", "é"]), max_size=40),
       st.lists(st.integers(1, 7), min_size=1, max_size=10))
def test_lines_split_like_str_splitlines_across_any_chunking(pieces, cuts):
    from dataprep.readers import _lines

    data = "".join(pieces).encode()
    chunks, start = [], 0
    for cut in cuts * (len(data) + 1):
        if start >= len(data):
            break
        chunks.append(data[start:start + cut])
        start += cut
    assert [line.decode() for line in _lines(iter(chunks))] == data.decode().splitlines()


def test_options_of_a_spec_source():
    from compiler.spec import DataSource

    assert ReaderOptions.of(DataSource(uri="/d", role="text", tokens=0)) == ReaderOptions()
    source = DataSource(uri="/d", role="text", tokens=0, format="parquet", text_field="content")
    assert ReaderOptions.of(source) == ReaderOptions(format="parquet", text_field="content")
