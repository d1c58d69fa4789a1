"""The real batch source of a run: runtime.data's step-indexed batch function over its locked sources.

Why here and not in runtime.data: this is where a run's spec meets the data
root: each `builtin://` source becomes its prepared corpus, the run's BPE
tokenizer and the token shard of the two, and, when the run directory holds
the lock (`lock.json`, as a store build folder does), each digest is checked
against the lock before a single batch is read. Any other source (fsspec
paths, `tfds://` datasets) is read from the files its lock entry lists, each
checked against its locked sha256 first (dataprep.external), so those
need the lock; their shards use the same built-in tokenizer. A run never trains on data
other than what its hash names; a mismatch is a BadInput that says which
input drifted. The tokenizer is the built-in BPE (trained on the built-in
corpora) or the user's tokenizer.json at any fsspec URI, read as its lock
pinned it (dataprep.user_tokenizer).

Preparing is idempotent (dataprep finds finished, verified artifacts and
returns them), so on a data root where `runix lock` ran this only opens files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from compiler.spec import RunSpec
from runtime.errors import BadInput

BUILTIN = "builtin://"
LOCK_FILE = "lock.json"


def default_data_root() -> Path:
    """Where `runix lock` prepares data by default: <project>/.runix/data (the working directory's)."""
    from compiler.store import default_data_root as project_data_root  # noqa: PLC0415

    return project_data_root(None)


def read_lock_entries(run_dir: str | os.PathLike[str]) -> Mapping[str, Any] | None:
    """The run's lock slice (lock.json in the run directory), or None when the directory has none."""
    path = Path(run_dir) / LOCK_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: unreadable lock: {e}") from None


def for_run(
    spec: RunSpec,
    data_root: str | os.PathLike[str] | None = None,
    *,
    lock_entries: Mapping[str, Any] | None = None,
    process_index: int = 0,
    process_count: int = 1,
):
    """`runtime.data.step_batches.BatchFunction` of the run (its `batch_at(step)` is the BatchSource)."""
    from runtime.data import step_batches  # noqa: PLC0415

    root = Path(data_root) if data_root is not None else default_data_root()
    try:
        shards = run_shards(spec, root, lock_entries)
        sources = [step_batches.MixtureSource(name, shards[name], int(src.tokens), int(src.max_repeats))
                   for name, src in sorted(spec.data.sources.items())]
        return step_batches.make_batch_function(
            sources, spec.batch.sequence_length, spec.batch.sequences, spec.total_steps, spec.data.seed,
            process_index=process_index, process_count=process_count,
            document_masking=spec.data.document_masking,
        )
    except BadInput:
        raise
    except (ValueError, OSError, RuntimeError) as e:  # data plan, missing package, integrity, tokenizer errors
        raise BadInput(f"data for run {spec.name} under {root}: {type(e).__name__}: {e}") from None


def run_shards(spec: RunSpec, root: Path, lock_entries: Mapping[str, Any] | None, store=None) -> dict[str, Any]:
    """Source name → the dataprep TokenShard it reads, each input checked against the lock first.

    store: a compiler.store.Store; each non-built-in source's shard is then
    taken from it, or tokenized once into it (dataprep.store_shards).
    """
    from dataprep import corpora, external, shards  # noqa: PLC0415 (heavy: tfds, tokenizers)
    from dataprep.builtin_corpora import builtin_names  # noqa: PLC0415
    from dataprep.readers import ReaderOptions  # noqa: PLC0415

    locked_sources = (lock_entries or {}).get("sources", {})
    builtin_needed = spec.data.tokenizer == f"{BUILTIN}bpe" or any(
        src.uri.startswith(BUILTIN) for src in spec.data.sources.values())
    manifests = {name: corpora.prepare_corpus(name, root) for name in builtin_names()} if builtin_needed else {}
    artifact = run_tokenizer(spec, root, lock_entries, manifests)
    out = {}
    for name, src in sorted(spec.data.sources.items()):
        if not src.uri.startswith(BUILTIN):
            locked = _external_lock(name, src.uri, lock_entries)
            options = ReaderOptions.of(src)
            try:
                out[name] = external.build_external_shard(name, src.uri, locked, artifact, root, options=options,
                                                         store=store)
            except external.SourceIntegrityError as e:
                raise BadInput(str(e)) from None
            continue
        corpus = src.uri[len(BUILTIN):]
        if corpus not in manifests:
            raise BadInput(f"source {name}: unknown built-in corpus {src.uri}; known: "
                           + ", ".join(BUILTIN + n for n in sorted(manifests)))
        _check_digest(f"source {name} ({src.uri})", manifests[corpus].digest, locked_sources.get(name))
        out[name] = shards.build_shard(manifests[corpus], artifact, root)
    return out


def shards_from_store(run_dir: str | os.PathLike[str], data_root: str | os.PathLike[str] | None, store) -> list[str]:
    """Before a run's trainer starts: each file or TFDS source's shard from `store` into the data root.

    A shard missing from the store is tokenized here once and published
    (under the store's lease, so one host of many does it); the trainer then
    finds every shard in its data root and reads only shards. Returns the
    names of the sources it handled; a run of only built-in corpora needs
    nothing (their shards are prepared in the data root by `runix lock`).
    BadInput (exit 2) for a source or tokenizer that does not match the lock.
    """
    from compiler.problems import SpecError  # noqa: PLC0415
    from runtime.run_dir import load_request  # noqa: PLC0415

    spec = load_request(run_dir).spec
    external = sorted(name for name, src in spec.data.sources.items() if not src.uri.startswith(BUILTIN))
    if not external:
        return []
    root = Path(data_root) if data_root is not None else default_data_root()
    try:
        run_shards(spec, root, read_lock_entries(run_dir), store=store)
    except BadInput:
        raise
    except SpecError as e:  # the store: unreachable, a damaged shard entry, a publish lease that timed out
        raise BadInput(f"data for run {spec.name}: {e}") from None
    except (ValueError, OSError, RuntimeError) as e:  # integrity, tokenizer, store errors
        raise BadInput(f"data for run {spec.name} under {root}: {type(e).__name__}: {e}") from None
    return external


def run_tokenizer(spec: RunSpec, root: Path, lock_entries: Mapping[str, Any] | None, manifests):
    """The run's tokenizer artifact: the built-in BPE trained on `manifests`, or the user's tokenizer.json as locked."""
    from dataprep import tokenizer, user_tokenizer  # noqa: PLC0415
    from dataprep.vocab import check_vocab  # noqa: PLC0415

    entry = (lock_entries or {}).get("tokenizer")
    uri = spec.data.tokenizer
    if uri == f"{BUILTIN}bpe":
        artifact = tokenizer.train_tokenizer(list(manifests.values()), spec.model.vocab_size, root)
    elif uri.startswith(BUILTIN):
        raise BadInput(f"unknown built-in tokenizer {uri}; the built-in one is {BUILTIN}bpe, "
                       "anything else is the URI of a tokenizer.json")
    else:
        locked = (entry or {}).get("locked")
        if entry is not None and not locked:
            raise BadInput(f"tokenizer {uri} is unresolved in the run's lock ({entry.get('unresolved')}); "
                           "run `runix lock` first")
        try:
            artifact = user_tokenizer.fetch_tokenizer(uri, root, locked["digest"] if locked else None)
        except tokenizer.TokenizerError as e:
            raise BadInput(str(e)) from None
    _check_digest("tokenizer", artifact.digest, entry)
    problem = check_vocab(uri, artifact.vocab_size, spec.model.vocab_size)
    if problem:
        raise BadInput(f"run {spec.name}: {problem}")
    return artifact


def _check_digest(what: str, actual: str, entry: Mapping[str, Any] | None) -> None:
    if entry is None:
        return  # no lock in the run directory: the hash was computed by whoever wrote spec.json
    locked = (entry.get("locked") or {}).get("digest")
    if locked is None:
        raise BadInput(f"{what} is unresolved in the run's lock ({entry.get('unresolved')}); run `runix lock` first")
    if locked != actual:
        raise BadInput(f"{what}: the prepared data has digest {actual}, but the run's lock says {locked}; "
                       "the data drifted since `runix lock` (relock, or prepare the locked data)")


def _external_lock(name: str, uri: str, lock_entries: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The locked record of a non-built-in source: the runtime reads exactly the files it lists."""
    entry = ((lock_entries or {}).get("sources") or {}).get(name)
    if entry is None:
        raise BadInput(f"source {name} ({uri}) is read from the files its lock entry lists, but the run directory "
                       f"has no lock ({LOCK_FILE}) with it; launch the run through `runix launch` after `runix lock`")
    locked = entry.get("locked")
    if not locked:
        raise BadInput(f"source {name} ({uri}) is unresolved in the run's lock ({entry.get('unresolved')}); "
                       "run `runix lock` first")
    if (entry.get("original") or {}).get("uri", uri) != uri:
        raise BadInput(f"source {name}: the run's lock is for {entry['original']['uri']}, the spec names {uri}")
    return locked
