"""Tokenization at scale on Apache Beam: one source's files → the same token shard, on any runner.

The pipeline (`build_shard_on_beam`):

    Create([(index, file name, path, sha256), ...])    one element per locked file
    | Reshuffle()                                       spread the files over the workers
    | ParDo(TokenizeFile)                               read (dataprep.readers), check the file's sha256,
                                                        tokenize, write piece <index>: tokens + lengths
    → the driver joins the pieces in file order         dataprep.shards.write_shard, as every shard is made

Why byte-identical whatever the runner and the worker count: a piece is a
pure function of one file's bytes, the reader options and the tokenizer
(encode_batch_fast is deterministic), pieces are named by the file's index
in the lock's name order, and the join reads them in that order through the
same `write_shard` the in-process path uses. Which worker tokenized which
file, and in which order they finished, cannot reach the bytes. Tests run the
DirectRunner in-process and in multi-process mode with 1 and 2 workers and
compare every byte with the in-process build (dataprep.external).

Dataflow: the same pipeline with standard Beam pipeline options;
`dataflow_options(...)` renders them (runner, project, region, temp and
staging locations, workers, machine type, the pinned requirements) for the
user to run or inspect; nothing here calls a cloud API. The pieces then go
to `stage_url` on a bucket (any fsspec URL) instead of a local folder.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dataprep.readers import ReaderOptions

ENCODE_BATCH_DOCUMENTS = 256


def direct_options(num_workers: int = 1, *, multi_process: bool = True) -> list[str]:
    """DirectRunner options: `num_workers` SDK workers, in processes (multi_processing) or threads."""
    mode = "multi_processing" if multi_process else "multi_threading"
    return ["--runner=DirectRunner", f"--direct_num_workers={int(num_workers)}", f"--direct_running_mode={mode}"]


def dataflow_options(*, project: str, region: str, temp_location: str, num_workers: int = 4,
                     max_num_workers: int | None = None, machine_type: str = "n2-standard-8",
                     job_name: str | None = None, requirements_file: str = "requirements.lock",
                     service_account: str | None = None) -> list[str]:
    """Standard Beam options that run this pipeline on Google Cloud Dataflow (rendered, never submitted here)."""
    options = [
        "--runner=DataflowRunner",
        f"--project={project}",
        f"--region={region}",
        f"--temp_location={temp_location.rstrip('/')}/temp",
        f"--staging_location={temp_location.rstrip('/')}/staging",
        f"--num_workers={int(num_workers)}",
        f"--max_num_workers={int(max_num_workers or num_workers)}",
        f"--worker_machine_type={machine_type}",
        f"--requirements_file={requirements_file}",
        "--save_main_session=false",
    ]
    if job_name:
        options.append(f"--job_name={job_name}")
    if service_account:
        options.append(f"--service_account_email={service_account}")
    return options


def render_options(options: Sequence[str]) -> str:
    return " ".join(shlex.quote(option) for option in options)


class TokenizeFile:
    """Beam DoFn body: one locked file → one piece (tokens, document lengths) under `stage_url`.

    Plain class wrapped by `_do_fn()` so that this module imports without
    apache_beam (the lock imports dataprep; beam is needed only to run).
    """

    def __init__(self, source: str, uri: str, tokenizer_json: str, options: ReaderOptions, stage_url: str,
                 dtype: str):
        self.source, self.uri = source, uri
        self.tokenizer_json = tokenizer_json
        self.options = options
        self.stage_url = stage_url
        self.dtype = dtype
        self._tokenizer = None

    def setup(self) -> None:
        import tokenizers  # noqa: PLC0415

        self._tokenizer = tokenizers.Tokenizer.from_str(self.tokenizer_json)
        self._tokenizer.encode_special_tokens = True  # "<|endoftext|>" inside a document is just text

    def process(self, element: tuple[int, str, str, str]) -> Iterator[tuple[int, int, int]]:
        import fsspec  # noqa: PLC0415

        from dataprep import external  # noqa: PLC0415

        index, rel, path, expected = element
        fs, _ = fsspec.core.url_to_fs(self.uri)
        documents = external.read_locked_file(self.source, self.uri, fs, rel, path, expected, self.options)
        lengths: list[int] = []
        with fsspec.open(piece_url(self.stage_url, index, "tokens"), "wb") as out:
            batch: list[str] = []
            for text in documents:
                batch.append(text)
                if len(batch) == ENCODE_BATCH_DOCUMENTS:
                    self._write(out, batch, lengths)
                    batch = []
            self._write(out, batch, lengths)
        with fsspec.open(piece_url(self.stage_url, index, "lengths"), "wb") as out:
            out.write(np.asarray(lengths, dtype="<i8").tobytes())
        yield index, int(sum(lengths)), len(lengths)

    def _write(self, out, texts: list[str], lengths: list[int]) -> None:
        if not texts:
            return
        for encoding in self._tokenizer.encode_batch_fast(texts, add_special_tokens=False):
            ids = np.asarray(encoding.ids, dtype=self.dtype)
            out.write(ids.tobytes())
            lengths.append(int(ids.size))


def piece_url(stage_url: str, index: int, kind: str) -> str:
    return f"{stage_url.rstrip('/')}/piece-{index:08d}.{kind}"


def _do_fn(body: TokenizeFile):
    import apache_beam as beam  # noqa: PLC0415

    class _TokenizeFileFn(beam.DoFn):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def setup(self):
            self.body.setup()

        def process(self, element):
            yield from self.body.process(element)

    return _TokenizeFileFn(body)


def run_tokenize_pipeline(source: str, uri: str, locked: Mapping[str, Any], tokenizer_artifact,
                          options: ReaderOptions, stage_url: str, pipeline_args: Sequence[str]) -> list[tuple[int, int, int]]:
    """Run the Beam pipeline writing one piece per locked file to `stage_url`; [(index, tokens, documents)]."""
    import apache_beam as beam  # noqa: PLC0415
    from apache_beam.options.pipeline_options import PipelineOptions  # noqa: PLC0415

    from dataprep import external  # noqa: PLC0415

    _, entries = external.file_paths(uri, locked)
    elements = [(index, rel, path, expected) for index, (rel, path, expected) in enumerate(entries)]
    dtype = "<u2" if tokenizer_artifact.vocab_size <= 1 << 16 else "<u4"
    body = TokenizeFile(source, uri, Path(tokenizer_artifact.path).read_text(encoding="utf-8"), options, stage_url,
                        dtype)
    results_url = f"{stage_url.rstrip('/')}/results"
    with beam.Pipeline(options=PipelineOptions(list(pipeline_args))) as pipeline:
        (pipeline
         | "files" >> beam.Create(elements)
         | "spread" >> beam.Reshuffle()
         | "tokenize" >> beam.ParDo(_do_fn(body))
         | "as json" >> beam.Map(json.dumps)
         | "record" >> beam.io.WriteToText(results_url, shard_name_template=""))
    import fsspec  # noqa: PLC0415

    with fsspec.open(results_url, "r") as f:
        results = sorted(tuple(json.loads(line)) for line in f if line.strip())
    if [r[0] for r in results] != list(range(len(elements))):
        raise RuntimeError(f"source {source}: the Beam pipeline returned pieces {[r[0] for r in results]}, "
                           f"expected 0..{len(elements) - 1}")
    return results


def _worker_error(source: str, uri: str, error: BaseException) -> str:
    """The worker's own one-line message (it names the source and the file) out of the runner's wrapping."""
    marker = f"source {source} ({uri}): "
    for line in str(error).splitlines():
        if marker in line:
            return marker + line.split(marker, 1)[1].split(" [while running", 1)[0].strip().rstrip("'\"]) ")
    return f"{marker}the Beam pipeline failed: {type(error).__name__}: {str(error).strip().splitlines()[-1:]}"


def joined_documents(stage_url: str, results: Sequence[tuple[int, int, int]], dtype: str) -> Iterator[np.ndarray]:
    """The documents of every piece, in file order (what write_shard consumes)."""
    import fsspec  # noqa: PLC0415

    for index, _, _ in results:
        with fsspec.open(piece_url(stage_url, index, "lengths"), "rb") as f:
            lengths = np.frombuffer(f.read(), dtype="<i8")
        with fsspec.open(piece_url(stage_url, index, "tokens"), "rb") as f:
            for length in lengths.tolist():
                yield np.frombuffer(f.read(length * np.dtype(dtype).itemsize), dtype=dtype)


def build_shard_on_beam(source: str, uri: str, locked: Mapping[str, Any], tokenizer_artifact,
                        root_dir: str | os.PathLike[str], *, options: ReaderOptions = ReaderOptions(),
                        pipeline_args: Sequence[str] = tuple(direct_options(1)), stage_url: str | None = None):
    """The token shard of an fsspec source, tokenized by the Beam pipeline; the same folder and bytes as
    dataprep.external.build_external_shard (which a finished shard short-cuts, as there)."""
    from dataprep import external  # noqa: PLC0415
    from dataprep.atomic_dir import exclusive  # noqa: PLC0415
    from dataprep.shards import open_if_complete  # noqa: PLC0415

    if locked.get("type") != "files":
        raise external.SourceIntegrityError(f"source {source} ({uri}): the Beam pipeline reads fsspec files, "
                                            f"not a locked source of type {locked.get('type')!r}")
    external.verify_files(source, uri, locked)  # on every call, as the in-process path does
    destination = external.shard_destination(locked, options, tokenizer_artifact, root_dir)
    existing = open_if_complete(destination)
    if existing is not None:
        return existing
    with exclusive(destination):  # one builder per shard; a second finds it finished
        existing = open_if_complete(destination)
        if existing is not None:
            return existing
        return _run_and_join(source, uri, locked, tokenizer_artifact, root_dir, options, pipeline_args, stage_url,
                             destination)


def _run_and_join(source, uri, locked, tokenizer_artifact, root_dir, options, pipeline_args, stage_url, destination):
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from dataprep import external  # noqa: PLC0415
    from dataprep.shards import write_shard  # noqa: PLC0415

    local_stage = None
    if stage_url is None:
        local_stage = tempfile.mkdtemp(prefix=".beam-", dir=Path(root_dir))
        stage_url = local_stage
    try:
        try:
            results = run_tokenize_pipeline(source, uri, locked, tokenizer_artifact, options, stage_url, pipeline_args)
        except Exception as error:  # noqa: BLE001 - a worker's error comes back wrapped by the runner
            raise external.SourceIntegrityError(_worker_error(source, uri, error)) from None
        dtype = "<u2" if tokenizer_artifact.vocab_size <= 1 << 16 else "<u4"
        return write_shard(joined_documents(stage_url, results, dtype), destination=destination, source=uri,
                           eos_id=tokenizer_artifact.eos_id, vocab_size=tokenizer_artifact.vocab_size,
                           provenance=external.shard_provenance(locked, options, tokenizer_artifact))
    finally:
        if local_stage is not None:
            shutil.rmtree(local_stage, ignore_errors=True)
