"""File → documents: the readers of the common corpus formats, each streaming with bounded memory.

A source's files are read by one reader, chosen by its `format` option or,
when that is `auto`, by each file's name:

  parquet        *.parquet, *.pq           pyarrow, one row group's `text_field` column at a time
  arrow          *.arrow, *.feather, *.ipc Arrow IPC file or stream (pyarrow), one record batch at a time
  jsonl          *.jsonl, *.ndjson (+ .gz / .zst)
                                           one JSON object per line, its string `text_field`; blank lines skipped
  array_record   *.array_record            each record a serialized tf.train.Example (what TFDS and most
                                           array_record corpora write) with a bytes feature `text_field`
  text           anything else (+ .gz / .zst)  the whole file is one document, UTF-8

`.gz` and `.zst` are undone while reading (gzip, zstandard), for any format
read as a byte stream (jsonl, text). Memory is bounded by one row group, one
record batch, one line or one document, never by the file. Empty documents
are left out; a null in a column is an error (a corpus that means "no text"
should say so with ""), as is a missing field, a non-string value, bytes that
are not UTF-8 or a file the format's library cannot parse, each naming the
file and the line, row or record.

What the reader options change (format, text_field) enters the shard's
content address and the run hash, never the file's location.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

FORMATS = ("auto", "parquet", "arrow", "jsonl", "text", "array_record")
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_BY_SUFFIX = {
    ".parquet": "parquet", ".pq": "parquet",
    ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".array_record": "array_record",
}
_ROWS_PER_BATCH = 1024
_CHUNK = 1 << 20
READER_VERSION = 2  # bump when the way any file becomes documents changes (enters shard keys)


class ReadError(ValueError):
    """A file cannot be read as documents; the message names the file and where in it."""


@dataclasses.dataclass(frozen=True)
class ReaderOptions:
    """How a source's files become documents (the spec's `format` and `text_field`)."""

    format: str = "auto"
    text_field: str = "text"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; one of {', '.join(FORMATS)}")

    @classmethod
    def of(cls, source) -> ReaderOptions:
        """The options of a spec source (compiler.spec.DataSource): unset means auto / text."""
        fmt = getattr(source.format, "value", source.format)
        return cls(format=fmt or "auto", text_field=source.text_field or "text")

    def key(self) -> dict[str, Any]:
        """What of the options changes the documents (enters content addresses)."""
        return {"reader": READER_VERSION, "format": self.format, "text_field": self.text_field}


def split_compression(name: str) -> tuple[str, str | None]:
    """('x.jsonl', 'zstd') for 'x.jsonl.zst'; (name, None) when not compressed."""
    lower = name.lower()
    for suffix, codec in COMPRESSIONS.items():
        if lower.endswith(suffix):
            return name[: -len(suffix)], codec
    return name, None


def file_format(name: str, options: ReaderOptions) -> str:
    """The reader of one file: the option, or inferred from the name when `auto`."""
    if options.format != "auto":
        return options.format
    inner, _ = split_compression(name)
    lower = inner.lower()
    for suffix, fmt in _BY_SUFFIX.items():
        if lower.endswith(suffix):
            return fmt
    return "text"


def documents(open_file, name: str, options: ReaderOptions) -> Iterator[str]:
    """The documents of one file, streamed; `open_file()` opens it for binary reading (seekable for parquet/arrow).

    name: the file's name as the lock records it (chooses the reader and
      the decompression; shown in errors).
    """
    fmt = file_format(name, options)
    _, codec = split_compression(name)
    if fmt in ("parquet", "arrow", "array_record") and codec is not None:
        raise ReadError(f"{name}: {fmt} files are read by random access and cannot be {codec}-compressed")
    reader = {"parquet": _parquet, "arrow": _arrow, "jsonl": _jsonl, "text": _text,
              "array_record": _array_record}[fmt]
    yield from reader(open_file, name, codec, options.text_field)


# --------------------------------------------------------------------------- byte streams


def _chunks(raw: BinaryIO, codec: str | None) -> Iterator[bytes]:
    """The decompressed bytes of a stream, 1 MiB of input at a time; a truncated stream is an error."""
    if codec == "gzip":
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:  # raises EOFError when truncated
            while chunk := stream.read(_CHUNK):
                yield chunk
        return
    if codec != "zstd":
        while chunk := raw.read(_CHUNK):
            yield chunk
        return
    import zstandard  # noqa: PLC0415

    decompressor = zstandard.ZstdDecompressor()
    frame, started = decompressor.decompressobj(), False
    while data := raw.read(_CHUNK):
        while data:
            started = True
            yield frame.decompress(data)
            data = b""
            if frame.eof:  # the frame ended; what follows starts the next one (a file may hold several)
                data, frame, started = frame.unused_data, decompressor.decompressobj(), False
    if started and not frame.eof:
        raise EOFError("the zstd stream ends inside a frame (truncated)")


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines of a chunked byte stream, split at \n, \r\n and \r (as str.splitlines would for these)."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        # A \r at the very end may be half of \r\n: the line it ends waits for the next chunk.
        end = len(data) - 1 if data.endswith(b"\r") else len(data)
        cut = max(data.rfind(b"\n", 0, end), data.rfind(b"\r", 0, end))
        carry = data[cut + 1:]
        if cut >= 0:
            yield from data[:cut + 1].splitlines()
    if carry:
        yield from carry.splitlines()


def _jsonl(open_file, name: str, codec: str | None, field: str) -> Iterator[str]:
    """Each line is decoded on its own, so an error names its line."""
    number = 0
    try:
        with open_file() as raw:
            for number, line in enumerate(_lines(_chunks(raw, codec)), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line.decode("utf-8"))
                except UnicodeDecodeError as e:
                    raise ReadError(f"{name} line {number} is not UTF-8 text ({e})") from None
                except ValueError as e:
                    raise ReadError(f"{name} line {number} is not JSON ({e})") from None
                value = record.get(field) if isinstance(record, dict) else None
                if not isinstance(value, str):
                    raise ReadError(f"{name} line {number} has no string field {field!r}")
                if value:
                    yield value
    except (OSError, EOFError, _zstd_error()) as e:
        raise ReadError(f"{name}: cannot read{' ' + codec if codec else ''} data after line {number} ({e})") from None


def _text(open_file, name: str, codec: str | None, field: str) -> Iterator[str]:
    del field  # a plain file has no fields: it is one document
    try:
        with open_file() as raw:
            data = b"".join(_chunks(raw, codec))
    except (OSError, EOFError, _zstd_error()) as e:
        raise ReadError(f"{name}: cannot read{' ' + codec if codec else ''} data ({e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ReadError(f"{name} is not UTF-8 text ({e})") from None
    if text:
        yield text


def _zstd_error() -> type[BaseException]:
    try:
        import zstandard  # noqa: PLC0415
    except ImportError:  # pragma: no cover - zstandard is in the lock
        return OSError
    return zstandard.ZstdError


# --------------------------------------------------------------------------- columnar


def _column_texts(column, name: str, field: str, first_row: int) -> Iterator[str]:
    import pyarrow as pa  # noqa: PLC0415

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            or pa.types.is_string_view(column.type)):
        raise ReadError(f"{name}: field {field!r} has type {column.type}, not a string")
    if column.null_count:
        row = first_row + next(i for i, v in enumerate(column.is_null().to_pylist()) if v)
        raise ReadError(f"{name} row {row}: field {field!r} is null")
    for text in column.to_pylist():
        if text:
            yield text


def _parquet(open_file, name: str, codec: str | None, field: str) -> Iterator[str]:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    with open_file() as raw:
        try:
            parquet = pq.ParquetFile(raw)
        except (pa.ArrowException, OSError, ValueError) as e:
            raise ReadError(f"{name}: not a readable parquet file ({e})") from None
        if field not in parquet.schema_arrow.names:
            raise ReadError(f"{name}: no field {field!r} (has {', '.join(parquet.schema_arrow.names)})")
        row = 0
        try:
            for batch in parquet.iter_batches(batch_size=_ROWS_PER_BATCH, columns=[field]):
                yield from _column_texts(batch.column(0), name, field, row)
                row += batch.num_rows
        except (pa.ArrowException, OSError) as e:
            raise ReadError(f"{name}: parquet data unreadable after row {row} ({e})") from None


def _arrow(open_file, name: str, codec: str | None, field: str) -> Iterator[str]:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.ipc as ipc  # noqa: PLC0415

    with open_file() as raw:
        magic = raw.read(6)
        raw.seek(0)
        try:
            if magic == b"ARROW1":
                reader = ipc.open_file(raw)
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            else:
                reader = ipc.open_stream(raw)
                batches = iter(reader)
            schema = reader.schema
        except (pa.ArrowException, OSError, ValueError) as e:
            raise ReadError(f"{name}: not a readable Arrow IPC file or stream ({e})") from None
        if field not in schema.names:
            raise ReadError(f"{name}: no field {field!r} (has {', '.join(schema.names)})")
        index, row = schema.get_field_index(field), 0
        try:
            for batch in batches:
                yield from _column_texts(batch.column(index), name, field, row)
                row += batch.num_rows
        except (pa.ArrowException, OSError) as e:
            raise ReadError(f"{name}: Arrow data unreadable after row {row} ({e})") from None


# --------------------------------------------------------------------------- array_record


def _array_record(open_file, name: str, codec: str | None, field: str) -> Iterator[str]:
    """array_record needs a local path (its reader is C++); other filesystems are copied to a temporary file."""
    import tempfile  # noqa: PLC0415

    from array_record.python.array_record_module import ArrayRecordReader  # noqa: PLC0415

    with open_file() as raw, tempfile.NamedTemporaryFile(suffix=".array_record") as local:
        path = getattr(raw, "name", None) if _is_local_file(raw) else None
        if path is None:
            while chunk := raw.read(1 << 20):
                local.write(chunk)
            local.flush()
            path = local.name
        try:
            reader = ArrayRecordReader(path, "readahead_buffer_size:0")
        except (RuntimeError, ValueError, OSError) as e:
            raise ReadError(f"{name}: not a readable array_record file ({e})") from None
        try:
            for index in range(reader.num_records()):
                value = _example_text(reader.read([index])[0], name, index, field)
                if value:
                    yield value
        finally:
            reader.close()


def _is_local_file(raw) -> bool:
    import os  # noqa: PLC0415

    path = getattr(raw, "name", None)
    return isinstance(path, str) and os.path.isfile(path)


def _example_text(record: bytes, name: str, index: int, field: str) -> str:
    from google.protobuf.message import DecodeError  # noqa: PLC0415
    from tensorflow_datasets.proto import tf_example_pb2  # noqa: PLC0415 (the proto only: no TensorFlow)

    try:
        example = tf_example_pb2.Example.FromString(record)
    except DecodeError as e:
        raise ReadError(f"{name} record {index}: not a tf.train.Example ({e})") from None
    features = example.features.feature
    if field not in features:
        raise ReadError(f"{name} record {index}: no feature {field!r} (has {', '.join(sorted(features)) or 'none'})")
    values = features[field].bytes_list.value
    if len(values) != 1:
        raise ReadError(f"{name} record {index}: feature {field!r} is not one bytes value")
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError as e:
        raise ReadError(f"{name} record {index}: feature {field!r} is not UTF-8 text ({e})") from None
