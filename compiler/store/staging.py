"""Checkpoints of a build in progress, kept in the store, so a build resumes on any machine.

Why a copy and not orbax writing into the bucket: orbax 0.12 builds its
tensorstore key-value store only for `gs://` and local paths
(`orbax/checkpoint/_src/serialization/tensorstore_utils.py`,
`build_kvstore_tspec`), so it cannot write to `s3://` at all. Every non-local
store therefore trains in a local folder, and the build's lease holder copies
each checkpoint orbax has finished (orbax renames a step's folder into place
only when it is complete) into the store:

    <root>/.building/<hash>-<name>/checkpoints/<step>/...   the step's files, one PUT each
    <root>/.building/<hash>-<name>/synced/<step>.json       written last: {"step", "files": {rel: {sha256, size}}}
    <root>/.building/<hash>-<name>/synced/<step>.metrics.jsonl   the metrics up to that step

A step counts only once its record exists (object stores have no rename: the
record is the commit), and `pull` checks every file it downloads against it.
A replaced pod on another machine (empty disk) pulls the newest recorded step
into its local folder and orbax resumes from there; steps orbax retired
locally are dropped from the store after a newer one is recorded.
"""

from __future__ import annotations

import json
import pathlib
import posixpath
import shutil
from typing import TYPE_CHECKING, Any

from compiler.resolve_inputs import sha256_stream
from compiler.store.files import json_bytes, local_manifest
from compiler.store.layout import BUILDING_DIR, CHECKPOINTS_DIR, METRICS_FILE, entry_name, safe_relative

if TYPE_CHECKING:
    from compiler.store.core import Store

SYNCED_DIR = "synced"


class CheckpointSync:
    """The checkpoints of one build, between its local folder and `<root>/.building/<entry>/` in the store."""

    def __init__(self, store: Store, run_hash: str, name: str, local: pathlib.Path):
        self.store = store
        self.local = pathlib.Path(local)
        self.remote = store.join(BUILDING_DIR, entry_name(run_hash, name))

    def _record_path(self, step: int) -> str:
        return posixpath.join(self.remote, SYNCED_DIR, f"{step}.json")

    def recorded(self) -> list[int]:
        """Steps whose copy in the store is complete (their record exists), oldest first."""
        folder = posixpath.join(self.remote, SYNCED_DIR)
        try:
            names = [posixpath.basename(p) for p in self.store.fs.ls(folder, detail=False)]
        except FileNotFoundError:
            return []
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def local_steps(self) -> list[int]:
        """Steps orbax finished in the local folder (a step's folder is renamed into place when complete)."""
        folder = self.local / CHECKPOINTS_DIR
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())

    def push(self) -> list[int]:
        """Copy every finished local step the store lacks; drop recorded steps orbax retired. Returns steps copied."""
        recorded = set(self.recorded())
        local = self.local_steps()
        copied = []
        for step in local:
            if step in recorded:
                continue
            try:
                self._push_step(step)
            except FileNotFoundError:  # orbax retired it while we copied: a newer step supersedes it
                continue
            copied.append(step)
        newest = max([*recorded, *copied], default=None)
        for step in sorted(recorded - set(local)):
            if step != newest:
                self._drop(step)
        return copied

    def _push_step(self, step: int) -> None:
        folder = self.local / CHECKPOINTS_DIR / str(step)
        files = local_manifest(folder)
        if not files:
            raise FileNotFoundError(folder)  # retired between the listing and now
        remote_step = posixpath.join(self.remote, CHECKPOINTS_DIR, str(step))
        for rel in sorted(files):
            self.store.fs.put_file(str(folder / rel), posixpath.join(remote_step, rel))
        metrics = self.local / METRICS_FILE
        if metrics.is_file():
            self.store.fs.put_file(str(metrics), posixpath.join(self.remote, SYNCED_DIR, f"{step}.{METRICS_FILE}"))
        self.store.fs.pipe_file(self._record_path(step), json_bytes({"step": step, "files": files}))  # last

    def _drop(self, step: int) -> None:
        fs = self.store.fs
        for path in (self._record_path(step), posixpath.join(self.remote, SYNCED_DIR, f"{step}.{METRICS_FILE}")):
            if fs.exists(path):
                fs.rm_file(path)
        remote_step = posixpath.join(self.remote, CHECKPOINTS_DIR, str(step))
        if fs.exists(remote_step):
            fs.rm(remote_step, recursive=True)

    def pull(self) -> int | None:
        """Download the newest recorded step unless the local folder has it or a newer one; returns it (or None)."""
        recorded = self.recorded()
        if not recorded:
            return None
        step = recorded[-1]
        if any(local >= step for local in self.local_steps()):
            return None
        record: dict[str, Any] = json.loads(self.store.fs.cat_file(self._record_path(step)))
        target = self.local / CHECKPOINTS_DIR / str(step)
        partial = self.local / f".pulling-{step}"  # outside checkpoints/: orbax never sees a half-pulled step
        shutil.rmtree(partial, ignore_errors=True)
        remote_step = posixpath.join(self.remote, CHECKPOINTS_DIR, str(step))
        for rel, expected in sorted(record["files"].items()):
            local = partial / safe_relative(rel)
            local.parent.mkdir(parents=True, exist_ok=True)
            self.store.fs.get_file(posixpath.join(remote_step, rel), str(local))
            sha, size = sha256_stream(lambda: open(local, "rb"))
            if (sha, size) != (expected.get("sha256"), expected.get("size")):
                shutil.rmtree(partial, ignore_errors=True)
                raise OSError(f"{remote_step}/{rel}: differs from its sync record; not resuming from it")
        metrics = posixpath.join(self.remote, SYNCED_DIR, f"{step}.{METRICS_FILE}")
        if self.store.fs.exists(metrics):
            self.store.fs.get_file(metrics, str(self.local / METRICS_FILE))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.rename(target)  # orbax sees the step only once all of it is here
        return step

    def discard(self) -> None:
        """Remove the build's copies from the store (after the entry is published)."""
        if self.store.fs.exists(self.remote):
            self.store.fs.rm(self.remote, recursive=True)
