"""Resolve the floating inputs of runs to content: the I/O half of `runix lock`.

Each resolver turns what a spec names (`original`: a URI as written) into what
it is (`locked`: digests of every byte, versions, counts), or says why it could
not (`unresolved`: a gs:// bucket without credentials here, a TFDS dataset not
prepared on this machine). An unresolved input is not an error for `lock`: the
lockfile records it, dry runs price it from `declared_tokens`, and `launch`
refuses it (compiler.lock.require_fully_resolved).

Token counts: a built-in corpus under the built-in BPE, and any file or
`tfds://` source under any locked tokenizer, is tokenized once into its shard
in the data root (dataprep), which `runix lock` then publishes into the store
(`DefaultResolver.shards`); a source that cannot be read as documents raises
SourceReadError (bad input).

Every `locked` record has a `digest` (hex sha256): the one value of the input
that enters the run hash. For file trees it is sha256 over the canonical JSON
of {"files": {relative path: sha256}}, the same rule as
dataprep.digests.digest_of_files, so runtime and compiler agree on it.

Schemes:
  builtin://<corpus>          dataprep prepares the corpus (TFDS array_record)
                              and its manifest; imported lazily, heavy.
  builtin://bpe (tokenizer)   dataprep trains/finds the BPE artifact for the
                              run's vocab_size.
  any other tokenizer URI     a Hugging Face tokenizer.json through fsspec
                              (dataprep.user_tokenizer): sha256, vocabulary, end token.
  tfds://name[/config][:version]/split
                              a TFDS dataset prepared in the local data dir
                              (no tfds import: its folder layout is enough).
  anything else               an fsspec path or URL: one file, a folder, or a glob.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from compiler.canonical import canonical_json
from dataprep.files import expand_braces, list_files, relative_name  # noqa: F401 (expand_braces: re-exported)

BUILTIN = "builtin://"
TFDS = "tfds://"
LOCAL_PROTOCOLS = frozenset({"file", "local", "memory"})
"""fsspec protocols read even with --offline (they never touch the network)."""

_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Resolution:
    """What one input resolved to: `locked` (with a "digest"), or why it could not."""

    locked: dict[str, Any] | None = None
    unresolved: str | None = None

    def __post_init__(self) -> None:
        assert (self.locked is None) != (self.unresolved is None), "exactly one of locked/unresolved"
        assert self.locked is None or isinstance(self.locked.get("digest"), str), "locked needs a digest"


class SourceReadError(Exception):
    """A locked source that cannot be read as documents (corrupt file, missing field): bad input for `runix lock`."""


def unresolved(reason: str) -> Resolution:
    return Resolution(unresolved=reason)


class Resolver(Protocol):
    """What compiler.lock.build_lock asks; tests substitute fakes."""

    def source(self, uri: str) -> Resolution: ...

    def tokenizer(self, uri: str, vocab_size: int) -> Resolution: ...

    def token_count(self, source_uri: str, source: Mapping[str, Any], tokenizer_uri: str,
                    vocab_size: int, tokenizer: Mapping[str, Any], reader: Mapping[str, str]) -> int | None:
        """Tokens of the locked `source` under the locked `tokenizer`, read with `reader` (the spec's
        format/text_field when set); None when not counted. SourceReadError when it cannot be read."""


@dataclasses.dataclass(frozen=True)
class ResolveOptions:
    data_root: Path  # where dataprep prepares built-in corpora, tokenizers, shards
    tfds_data_dir: Path | None = None  # default: $TFDS_DATA_DIR or ~/tensorflow_datasets
    offline: bool = False  # do not contact remote filesystems (gs://, s3://, http://, ...)
    remote_timeout: float = 60.0  # seconds per remote input before it is reported unresolved
    count_tokens: bool = True  # tokenize every locked source once (its shard) to record token counts


# --------------------------------------------------------------------------- digests


def files_digest(files: Mapping[str, Mapping[str, Any]]) -> str:
    """sha256 over {"files": {relative path: sha256}} (dataprep.digests.digest_of_files)."""
    plain = {rel: entry["sha256"] for rel, entry in files.items()}
    return hashlib.sha256(canonical_json({"files": plain}).encode("utf-8")).hexdigest()


def sha256_stream(open_file: Callable[[], Any]) -> tuple[str, int]:
    """(hex sha256, size in bytes) of what `open_file()` opens, read in 1 MiB chunks (lockfiles and store manifests)."""
    digest = hashlib.sha256()
    size = 0
    with open_file() as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def local_files_record(root: Path, relative: list[str]) -> dict[str, dict[str, Any]]:
    """{rel: {"sha256", "size"}} of files under a local folder."""
    record = {}
    for rel in sorted(relative):
        sha, size = sha256_stream(lambda: open(root / rel, "rb"))
        record[rel] = {"sha256": sha, "size": size}
    return record


# --------------------------------------------------------------------------- the default resolver


class DefaultResolver:
    """Resolves every scheme of the module docstring; caches within one `runix lock`."""

    def __init__(self, options: ResolveOptions, log: Callable[[str], None] = lambda message: None):
        self.options = options
        self.log = log
        self._builtin = BuiltinData(options.data_root, log)
        self.shards: dict[str, Any] = {}  # shard key → dataprep TokenShard of each file/TFDS source tokenized here

    def source(self, uri: str) -> Resolution:
        if uri.startswith(BUILTIN):
            return self._builtin.corpus(uri.removeprefix(BUILTIN))
        if uri.startswith(TFDS):
            return resolve_tfds(uri, self.options.tfds_data_dir)
        return self._path(uri)

    def tokenizer(self, uri: str, vocab_size: int) -> Resolution:
        if uri.startswith(BUILTIN):
            return self._builtin.tokenizer(uri.removeprefix(BUILTIN), vocab_size)
        from fsspec.utils import get_protocol

        if get_protocol(uri) not in LOCAL_PROTOCOLS:
            if self.options.offline:
                return unresolved(f"{get_protocol(uri)}:// not contacted (--offline)")
            self.log(f"reading {uri} (up to {self.options.remote_timeout:g} s)")
            return with_timeout(lambda: resolve_tokenizer_file(uri), self.options.remote_timeout)
        return resolve_tokenizer_file(uri)

    def _path(self, uri: str) -> Resolution:
        from fsspec.utils import get_protocol

        if self.options.offline or get_protocol(uri) in LOCAL_PROTOCOLS:
            return resolve_path(uri, offline=self.options.offline)
        self.log(f"reading {uri} (up to {self.options.remote_timeout:g} s)")
        return with_timeout(lambda: resolve_path(uri), self.options.remote_timeout)

    def token_count(self, source_uri: str, source: Mapping[str, Any], tokenizer_uri: str,
                    vocab_size: int, tokenizer: Mapping[str, Any], reader: Mapping[str, str] | None = None) -> int | None:
        if not self.options.count_tokens:
            return None
        if source_uri.startswith(BUILTIN):
            if not tokenizer_uri.startswith(BUILTIN):
                return None  # a built-in corpus under the user's tokenizer: the build tokenizes it
            return self._builtin.token_count(source_uri.removeprefix(BUILTIN), tokenizer_uri.removeprefix(BUILTIN),
                                             vocab_size)
        return self._external_count(source_uri, source, tokenizer_uri, vocab_size, tokenizer, dict(reader or {}))

    def _external_count(self, uri: str, locked: Mapping[str, Any], tokenizer_uri: str, vocab_size: int,
                        tokenizer: Mapping[str, Any], reader: dict[str, str]) -> int | None:
        """Tokenize a file or TFDS source once into its shard in the data root; `shards` keeps it for the store.

        `runix lock` publishes these shards into the store once the lockfile
        is written (compiler.commands.lock), so no build tokenizes them again.
        """
        from dataprep import external  # noqa: PLC0415 (heavy: tokenizers, numpy)
        from dataprep.readers import ReaderOptions  # noqa: PLC0415
        from dataprep.vocab import check_vocab  # noqa: PLC0415

        if locked.get("type") not in ("files", "tfds"):
            return None
        if check_vocab(tokenizer_uri, int(tokenizer.get("vocab_size") or 0), vocab_size or None):
            return None  # the model cannot embed this tokenizer: `runix lock` refuses the run (data_checks)
        try:
            artifact = self._tokenizer_artifact(tokenizer_uri, vocab_size, tokenizer)
        except Exception as err:  # noqa: BLE001 - no count without the tokenizer; the build says why
            self.log(f"no token count for {uri}: {_reason(err)}")
            return None
        self.log(f"tokenizing {uri} into its token shard (once; builds copy it from the store)")
        try:
            shard = external.build_external_shard(uri, uri, locked, artifact, self.options.data_root,
                                                  tfds_dir=self.options.tfds_data_dir, options=ReaderOptions(**reader))
        except external.SourceIntegrityError as err:  # its message starts "source <name> (<uri>): "; here both are the uri
            raise SourceReadError(str(err).replace(f"source {uri} ({uri}): ", f"{uri}: ", 1)) from None
        self.shards[shard.path.name] = shard
        return shard.num_tokens

    def _tokenizer_artifact(self, uri: str, vocab_size: int, locked: Mapping[str, Any]):
        if uri.startswith(BUILTIN):
            return self._builtin.bpe(vocab_size)
        from dataprep.user_tokenizer import fetch_tokenizer  # noqa: PLC0415

        return fetch_tokenizer(uri, self.options.data_root, locked.get("digest"))


# --------------------------------------------------------------------------- builtin:// (dataprep)


class BuiltinData:
    """Adapter over dataprep: the only place the compiler calls the data preparation.

    Imports are lazy (dataprep imports tfds, tokenizers, numpy), so only
    `runix lock` pays for them. Every failure (a Debian package not unpacked,
    a TFDS build error) becomes an unresolved input with its message.
    """

    def __init__(self, data_root: Path, log: Callable[[str], None]):
        self.data_root = Path(data_root)
        self.log = log
        self._manifests: dict[str, Any] = {}
        self._artifacts: dict[tuple[str, int], Any] = {}

    def corpus(self, name: str) -> Resolution:
        try:
            manifest = self._manifest(name)
        except Exception as err:  # noqa: BLE001 - any failure of the preparation is "unresolved"
            return unresolved(_reason(err))
        files = local_files_record(manifest.path, list(manifest.files))
        mismatched = [rel for rel, entry in files.items() if entry["sha256"] != manifest.files[rel]]
        if mismatched:
            return unresolved(f"prepared corpus {manifest.path} does not match its manifest: {', '.join(mismatched)}")
        return Resolution(locked={
            "type": "builtin",
            "name": manifest.name,
            "digest": manifest.digest,
            "files": files,
            "tfds_dir": manifest.tfds_dir,
            "num_documents": manifest.num_documents,
            "num_text_bytes": manifest.num_text_bytes,
            "inputs_digest": manifest.inputs_digest,
            "provenance": _json_plain(manifest.provenance),
        })

    def tokenizer(self, name: str, vocab_size: int) -> Resolution:
        if name != "bpe":
            return unresolved(f"unknown built-in tokenizer {BUILTIN}{name}; the built-in one is {BUILTIN}bpe")
        try:
            artifact, manifests = self._tokenizer(vocab_size)
        except Exception as err:  # noqa: BLE001
            return unresolved(_reason(err))
        return Resolution(locked={
            "type": "builtin-tokenizer",
            "name": name,
            "digest": artifact.digest,
            "vocab_size": artifact.vocab_size,
            "eos_id": artifact.eos_id,
            "trained_on": {m.uri: m.digest for m in manifests},
        })

    def token_count(self, corpus: str, tokenizer: str, vocab_size: int) -> int | None:
        try:
            from dataprep.shards import build_shard

            artifact, _ = self._tokenizer(vocab_size)
            self.log(f"tokenizing {BUILTIN}{corpus} with {BUILTIN}{tokenizer} (vocab {vocab_size})")
            return int(build_shard(self._manifest(corpus), artifact, self.data_root).num_tokens)
        except Exception as err:  # noqa: BLE001 - a count is optional
            self.log(f"no token count for {BUILTIN}{corpus}: {_reason(err)}")
            return None

    def bpe(self, vocab_size: int):
        """The built-in BPE artifact for this vocabulary size (trained once, then found)."""
        return self._tokenizer(vocab_size)[0]

    def _manifest(self, name: str):
        if name not in self._manifests:
            from dataprep.corpora import prepare_corpus

            self.log(f"preparing {BUILTIN}{name} under {self.data_root}")
            self._manifests[name] = prepare_corpus(name, self.data_root)
        return self._manifests[name]

    def _tokenizer(self, vocab_size: int):
        key = ("bpe", vocab_size)
        if key not in self._artifacts:
            from dataprep.builtin_corpora import builtin_names
            from dataprep.tokenizer import train_tokenizer

            manifests = [self._manifest(name) for name in builtin_names()]
            self.log(f"training or finding {BUILTIN}bpe with vocab {vocab_size}")
            self._artifacts[key] = (train_tokenizer(manifests, vocab_size, self.data_root), manifests)
        return self._artifacts[key]


# --------------------------------------------------------------------------- tokenizer.json (dataprep)


def resolve_tokenizer_file(uri: str) -> Resolution:
    """sha256, vocabulary size and end-of-document id of a Hugging Face tokenizer.json at an fsspec URI.

    A file that is there but is not a tokenizer (unparsable, no end token)
    is unresolved with the reason; dataprep.user_tokenizer reads it exactly as
    the runtime will.
    """
    from dataprep.tokenizer import TokenizerError
    from dataprep.user_tokenizer import read_tokenizer_bytes, tokenizer_facts

    try:
        facts, _ = tokenizer_facts(uri, read_tokenizer_bytes(uri))
    except TokenizerError as err:
        return unresolved(str(err))
    return Resolution(locked=facts.locked())


# --------------------------------------------------------------------------- tfds://


_TFDS_URI = re.compile(
    r"^tfds://(?P<name>[A-Za-z0-9_]+)(?:/(?P<config>[^/:]+))?(?::(?P<version>[0-9]+\.[0-9]+\.[0-9]+))?/(?P<split>[^/]+)$"
)


def parse_tfds_uri(uri: str) -> dict[str, str | None] | None:
    match = _TFDS_URI.match(uri)
    return match.groupdict() if match else None


def default_tfds_data_dir() -> Path:
    return Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets")


def resolve_tfds(uri: str, data_dir: Path | None) -> Resolution:
    """Version + sha256 of every file of the split in the local TFDS data dir.

    The dataset must be prepared already (`tfds build`, or a builder's
    download_and_prepare): the lock reads bytes, it never downloads. With no
    version in the URI the newest prepared version is locked.
    """
    parts = parse_tfds_uri(uri)
    if parts is None:
        return unresolved("not a TFDS URI; write tfds://name[/config][:version]/split")
    root = Path(data_dir) if data_dir is not None else default_tfds_data_dir()
    dataset_dir = root / parts["name"]
    if parts["config"]:
        dataset_dir = dataset_dir / parts["config"]
    if parts["version"]:
        version = parts["version"]
    else:
        versions = sorted(
            (p.name for p in dataset_dir.glob("*") if _is_version(p.name) and (p / "dataset_info.json").is_file()),
            key=lambda v: tuple(int(x) for x in v.split(".")),
        )
        if not versions:
            return unresolved(f"TFDS dataset not prepared locally (no version under {dataset_dir})")
        version = versions[-1]
    builder_dir = dataset_dir / version
    if not (builder_dir / "dataset_info.json").is_file():
        return unresolved(f"TFDS dataset version {version} not prepared locally ({builder_dir})")
    split = parts["split"].split("[", 1)[0]  # train[:10%] reads the files of train
    names = sorted(p.name for p in builder_dir.iterdir() if p.is_file() and f"-{split}." in p.name)
    if not names:
        return unresolved(f"TFDS split {split!r} has no prepared files in {builder_dir}")
    metadata = [n for n in ("dataset_info.json", "features.json") if (builder_dir / n).is_file()]
    files = local_files_record(builder_dir, names + metadata)
    return Resolution(locked={
        "type": "tfds",
        "name": parts["name"],
        "config": parts["config"],
        "version": version,
        "split": parts["split"],
        "files": files,
        "digest": files_digest(files),
    })


def _is_version(name: str) -> bool:
    return re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", name) is not None


# --------------------------------------------------------------------------- fsspec paths and URLs


def resolve_path(uri: str, *, offline: bool = False) -> Resolution:
    """Size + sha256 of every file a path names: one file, a folder (recursively), a glob, or {a,b} alternatives.

    File names in the record are relative to the fixed part of the path (the
    folder above the first wildcard or brace; the file's folder for one file).
    """
    import fsspec  # only `runix lock` needs it here
    from fsspec.utils import get_protocol

    protocol = get_protocol(uri)
    if offline and protocol not in LOCAL_PROTOCOLS:
        return unresolved(f"{protocol}:// not contacted (--offline)")
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except ImportError as err:
        return unresolved(f"no filesystem for {protocol}:// installed here ({err})")
    except Exception as err:  # noqa: BLE001 - a malformed URL or a driver that cannot start
        return unresolved(_reason(err))
    try:
        try:
            base, found = list_files(fs, path)
        except FileNotFoundError as err:
            return unresolved(str(err))
        files = {}
        for file in found:
            rel = relative_name(base, file)
            sha, size = sha256_stream(lambda: fs.open(file, "rb"))
            files[rel] = {"sha256": sha, "size": size}
    except Exception as err:  # noqa: BLE001 - network, permissions, credentials: all "cannot reach"
        return unresolved(_reason(err))
    return Resolution(locked={
        "type": "files",
        "files": files,
        "size": sum(entry["size"] for entry in files.values()),
        "digest": files_digest(files),
    })


# --------------------------------------------------------------------------- helpers


def with_timeout(resolve: Callable[[], Resolution], seconds: float) -> Resolution:
    """Run a resolution in a daemon thread; past `seconds` the input is unresolved (the thread is abandoned).

    Remote filesystems may retry for minutes when the network is closed; a
    lock must still finish and say which inputs it could not reach.
    """
    result: list[Resolution] = []
    thread = threading.Thread(target=lambda: result.append(resolve()), daemon=True)
    thread.start()
    thread.join(seconds)
    if not result:
        return unresolved(f"no answer within {seconds:g} s (unreachable from here?)")
    return result[0]


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def _json_plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _json_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value
