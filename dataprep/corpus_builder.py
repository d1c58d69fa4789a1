"""Write one corpus as a TFDS dataset (array_record), byte for byte reproducibly.

Run in a separate process (`dataprep.corpora` starts one): the array_record bytes are identical from build
to build only when protobuf uses its pure-Python implementation, and that is
chosen once per process, before protobuf is first imported. Running the build
in its own process sets that switch without touching the caller's interpreter,
and `main` refuses to build if it did not take effect.

The documents arrive as a JSON-lines file of {"id", "text"} in their final
order; the dataset keeps that order (shuffling disabled) and has one split,
"train", with two text features: `id` (the document's stable path) and `text`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import tensorflow_datasets as tfds
from google.protobuf.internal import api_implementation

BUILDER_NAME = "runix_corpus"
BUILDER_VERSION = "1.0.0"


def config_name(corpus_name: str) -> str:
    """TFDS config names may not contain '-': builtin://code-adjacent -> code_adjacent."""
    return corpus_name.replace("-", "_")


class RunixCorpus(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A runix corpus: documents with a stable id, in a fixed order."""

    name = BUILDER_NAME
    VERSION = tfds.core.Version(BUILDER_VERSION)
    RELEASE_NOTES = {BUILDER_VERSION: "Documents with id and text, one split, fixed order."}
    # Where TFDS would look for a checksums file of downloads. This builder
    # downloads nothing; and TFDS's own lookup of it, for a builder defined in
    # a package, needs `importlib_resources`, which is not a dependency.
    code_path = None

    def __init__(self, *, documents_path: str | os.PathLike[str], **kwargs):
        self._documents_path = Path(documents_path)
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="A runix corpus: documents with a stable id, in a fixed order.",
            features=tfds.features.FeaturesDict(
                {"id": tfds.features.Text(), "text": tfds.features.Text()}
            ),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is local: the documents file is the only input
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        with open(self._documents_path, encoding="utf-8") as f:
            for line in f:
                document = json.loads(line)
                yield document["id"], {"id": document["id"], "text": document["text"]}


def build(corpus_name: str, documents_path: Path, data_dir: Path) -> Path:
    """Build the dataset under `data_dir`; return the folder holding its files."""
    builder = RunixCorpus(
        documents_path=documents_path,
        data_dir=str(data_dir),
        config=tfds.core.BuilderConfig(name=config_name(corpus_name)),
        file_format="array_record",
    )
    # TFDS creates an (empty) download folder; keep it out of the dataset tree.
    with tempfile.TemporaryDirectory(prefix="runix-tfds-downloads-") as downloads:
        builder.download_and_prepare(
            download_dir=downloads,
            download_config=tfds.download.DownloadConfig(try_download_gcs=False),
        )
    return Path(builder.data_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus_name")
    parser.add_argument("documents_path", type=Path)
    parser.add_argument("data_dir", type=Path)
    args = parser.parse_args(argv)
    if api_implementation.Type() != "python":
        print(
            "corpus_builder: protobuf is not using its Python implementation "
            f"({api_implementation.Type()!r}); the array_record bytes would not be "
            "reproducible. Set PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python.",
            file=sys.stderr,
        )
        return 3
    data_dir = build(args.corpus_name, args.documents_path, args.data_dir)
    print(data_dir.resolve().relative_to(args.data_dir.resolve()).as_posix())
    return 0


if __name__ == "__main__":
    sys.exit(main())
