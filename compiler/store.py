"""The store: built runs by hash, as Nix keeps built derivations (layout: compiler.store_layout).

    store = Store(".runix/store")                   # or "memory://…", "gs://bucket/store"
    build = store.begin_build(run, lock.entries_for(run), plan)   # None: already built
    if build is not None:
        train(build.path)                           # the runtime writes checkpoints/, metrics, digest.json
        store.finish_build(run.hash)                # manifest, rename into place, marker last

    # A launcher and a build job on another machine split this in two:
    store.register(run, lock.entries_for(run), plan)   # launcher: the run's derivation, by hash
    build = store.begin_build(run_hash)                 # job: only the hash (and the store URL)

Guarantees:
  * A half-written entry is never taken for a built one: an entry is built only
    when its COMPLETE.json marker exists, and the marker is written last, after
    the manifest and the rename. `verify` re-hashes every file of the manifest.
  * One builder per hash: `begin_build` takes an exclusive lock (fcntl.flock on
    local stores: released by the kernel if the builder dies, so a crash never
    leaves a stale lock). A second launcher of the same run waits for the lock
    (or, with wait=False, returns at once) and then finds the run built and
    skips it.
  * A killed build resumes: its folder stays under .building/ (checkpoints
    included) and the next begin_build of that hash continues in it.

Local and remote stores. Training writes orbax checkpoints to a local folder,
so a run is always built in a local folder: for a local store it is
`<root>/.building/<hash>-<name>/` itself; for any other fsspec URL it is a
local staging folder, and finish_build uploads the finished files to
`<root>/.building/<hash>-<name>/`, moves them to `<root>/<hash>-<name>/` and
writes the marker last. Locks on non-local stores are lock objects created
with exclusive-create (`open(..., "xb")`), atomic on the local and memory
filesystems; object stores without conditional writes make this best-effort,
so launch one builder per run there (XManager's job identity does) — a lost
race costs a duplicate build, never a corrupt entry, because a complete
entry is only ever replaced by the marker of an identical build.
The memory filesystem ("memory://") is the test double of a remote store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import pathlib
import posixpath
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from compiler.problems import Location, Problem, SpecError
from compiler.resolve_inputs import sha256_stream
from compiler.store_layout import (
    BUILDING_DIR, COMPLETE_FILE, DERIVATIONS_DIR, HASH_PREFIX, LOCK_FILE, LOCKS_DIR, MANIFEST_FILE, NOT_IN_MANIFEST, PLAN_FILE,
    SPEC_FILE, STORE_FORMAT, TRASH_DIR, UnsafePath, check_hash, entry_name, parse_entry_name, safe_relative,
    spec_document,
)

DEFAULT_STORE = ".runix/store"
DEFAULT_DATA_ROOT = ".runix/data"
"""Relative to the project root (compiler.lock.project_root); `--store URL` overrides it."""


class StoreError(SpecError):
    """Bad input about the store (unknown hash, tampered entry, unsafe path): exit 2."""

    def __init__(self, where: str, message: str):
        super().__init__([Problem(Location(where), "", message)])


@dataclasses.dataclass(frozen=True)
class EntryInfo:
    hash: str
    name: str
    status: str  # "built" | "building" | "incomplete" (published but no marker: a crash mid-finish)
    path: str
    parent_hash: str | None = None


@dataclasses.dataclass
class Build:
    """A build in progress, holding the run's build lock until finish or abort."""

    store: Store
    hash: str
    name: str
    path: pathlib.Path  # local folder the runtime writes into
    resumed: bool  # the folder held a previous, interrupted build of the same run

    def finish(self) -> str:
        return self.store.finish_build(self.hash)

    def abort(self, discard: bool = False) -> None:
        self.store.abort_build(self.hash, discard=discard)

    def __enter__(self) -> Build:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.hash in self.store._held:  # not finished: keep the folder so a retry resumes
            self.store.abort_build(self.hash)


def default_store_url(project_root: pathlib.Path | None) -> str:
    return str((project_root or pathlib.Path.cwd()) / DEFAULT_STORE)


def default_data_root(project_root: pathlib.Path | None) -> pathlib.Path:
    """Where `runix lock` prepares built-in data and where launch and replay read it."""
    return (project_root or pathlib.Path.cwd()) / DEFAULT_DATA_ROOT


class Store:
    def __init__(self, url: str | os.PathLike[str], staging: str | os.PathLike[str] | None = None):
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        self.url = str(url)
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.root = root.rstrip("/") or "/"
        if self.is_local:
            self.root = str(pathlib.Path(self.root).resolve())
        if staging is None and not self.is_local:
            staging = pathlib.Path(tempfile.gettempdir()) / "runix-staging" / hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.staging = pathlib.Path(staging) if staging is not None else None
        self._held: dict[str, tuple[_BuildLock, str]] = {}

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # ------------------------------------------------------------------ paths

    def _join(self, *parts: str) -> str:
        for part in parts:
            safe_relative(part)
        return posixpath.join(self.root, *parts)

    def entry_path(self, run_hash: str, name: str) -> str:
        return self._join(entry_name(run_hash, name))

    def building_path(self, run_hash: str, name: str) -> pathlib.Path:
        """The local folder where this run is (or would be) built."""
        if self.is_local:
            return pathlib.Path(self._join(BUILDING_DIR, entry_name(run_hash, name)))
        return self.staging / entry_name(run_hash, name)

    def _remote_building_path(self, run_hash: str, name: str) -> str:
        return self._join(BUILDING_DIR, entry_name(run_hash, name))

    # ------------------------------------------------------------------ queries

    def _listing(self, folder: str) -> list[str]:
        try:
            return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(folder, detail=False))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _entries(self, run_hash: str | None = None) -> list[tuple[str, str]]:
        """(hash, name) of every published folder (built or not) in the root."""
        found = []
        for dirname in self._listing(self.root):
            parsed = parse_entry_name(dirname)
            if parsed and (run_hash is None or parsed[0] == run_hash):
                found.append(parsed)
        return found

    def find(self, run_hash: str) -> tuple[str, str] | None:
        """(hash, name) of the published folder of `run_hash`, built or not."""
        check_hash(run_hash)
        entries = self._entries(run_hash)
        built = [e for e in entries if self._has_marker(*e)]
        return (built or entries or [None])[0]

    def _has_marker(self, run_hash: str, name: str) -> bool:
        return self.fs.exists(posixpath.join(self.entry_path(run_hash, name), COMPLETE_FILE))

    def is_built(self, run_hash: str) -> bool:
        found = self.find(run_hash)
        return found is not None and self._has_marker(*found)

    def built_hashes(self) -> set[str]:
        """Hashes of every built entry, from one listing (what `compile` marks as built)."""
        return {run_hash for run_hash, name in self._entries() if self._has_marker(run_hash, name)}

    def entry(self, run_hash: str) -> str:
        """Path of the built entry of `run_hash`; StoreError if it is not built."""
        found = self.find(self.resolve(run_hash))
        if found is None or not self._has_marker(*found):
            state = "only partly published (no completion marker)" if found else "not in the store"
            raise StoreError(self.url, f"run {run_hash} is {state}")
        return self.entry_path(*found)

    def resolve(self, prefix: str) -> str:
        """The full hash of a built or building run from a unique prefix (≥ 6 hex digits)."""
        if not isinstance(prefix, str) or not HASH_PREFIX.match(prefix):
            raise StoreError(self.url, f"not a run hash or hash prefix (6-64 lowercase hex digits): {prefix!r}")
        known = {h for h, _ in self._entries()} | {h for h, _ in self._building()}
        matches = sorted(h for h in known if h.startswith(prefix))
        if not matches:
            raise StoreError(self.url, f"run {prefix} is not in the store")
        if len(matches) > 1:
            raise StoreError(self.url, f"hash prefix {prefix} is ambiguous: {', '.join(m[:16] for m in matches)}")
        return matches[0]

    def _building(self) -> list[tuple[str, str]]:
        found = [parse_entry_name(d) for d in self._listing(self._join(BUILDING_DIR))]
        if not self.is_local and self.staging is not None and self.staging.is_dir():
            found += [parse_entry_name(p.name) for p in self.staging.iterdir()]
        return sorted({f for f in found if f})

    def ls(self) -> list[EntryInfo]:
        """Every entry: built, incomplete (published without marker), and builds in progress."""
        out = []
        for run_hash, name in self._entries():
            status = "built" if self._has_marker(run_hash, name) else "incomplete"
            path = self.entry_path(run_hash, name)
            out.append(EntryInfo(run_hash, name, status, path, self._parent_of(path)))
        for run_hash, name in self._building():
            out.append(EntryInfo(run_hash, name, "building", str(self.building_path(run_hash, name)), None))
        seen = {e.hash for e in out}
        for run_hash, name in self._registered():
            if run_hash not in seen:
                path = self._join(DERIVATIONS_DIR, entry_name(run_hash, name))
                out.append(EntryInfo(run_hash, name, "registered", path, self._parent_of(path)))
        return sorted(out, key=lambda e: (e.name, e.hash, e.status))

    def _parent_of(self, entry_path: str) -> str | None:
        try:
            parent = json.loads(self.fs.cat_file(posixpath.join(entry_path, SPEC_FILE))).get("parent_hash")
        except (OSError, ValueError, AttributeError):
            return None
        try:
            return check_hash(parent) if parent is not None else None
        except UnsafePath:
            return None

    def read_json(self, run_hash: str, filename: str, *, verify: bool = True) -> Any:
        """A JSON file of a built entry (spec.json, lock.json, digest.json…); verified first by default.

        A tampered entry is bad input for whoever reads it (StoreError, exit 2).
        """
        path = self.entry(run_hash)
        if verify:
            problems = self.verify(run_hash)
            if problems:
                raise StoreError(path, "store entry fails verification (tampered or damaged): " + "; ".join(problems))
        try:
            return json.loads(self.fs.cat_file(posixpath.join(path, safe_relative(filename))))
        except (FileNotFoundError, ValueError, UnsafePath) as err:
            raise StoreError(path, f"cannot read {filename}: {err}") from None

    def build_path_of(self, run_hash: str) -> pathlib.Path | None:
        """The local folder of a build in progress of `run_hash` (what the runtime trains in), or None."""
        check_hash(run_hash)
        for found_hash, name in self._building():
            if found_hash == run_hash:
                return self.building_path(found_hash, name)
        return None

    def local_copy(self, run_hash: str) -> pathlib.Path:
        """A local folder holding the built entry (a parent's checkpoint for its child, a replay).

        A local store returns the entry itself; any other store downloads it
        once into the staging folder (`<staging>/.entries/<hash>-<name>/`),
        checking every file against the manifest.
        """
        path = self.entry(run_hash)
        if self.is_local:
            return pathlib.Path(path)
        run_hash, name = self.find(self.resolve(run_hash))
        target = self.staging / ".entries" / entry_name(run_hash, name)
        marker = json.loads(self.fs.cat_file(posixpath.join(path, COMPLETE_FILE)))
        done = target / COMPLETE_FILE
        if done.is_file() and json.loads(done.read_text()) == marker:
            return target
        manifest_bytes = self.fs.cat_file(posixpath.join(path, MANIFEST_FILE))
        if hashlib.sha256(manifest_bytes).hexdigest() != marker.get("manifest_sha256"):
            raise StoreError(path, f"{MANIFEST_FILE} was modified; the entry cannot be trusted")
        shutil.rmtree(target, ignore_errors=True)
        for rel, expected in sorted(json.loads(manifest_bytes)["files"].items()):
            local = target / safe_relative(rel)
            local.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(posixpath.join(path, rel), str(local))
            sha, size = sha256_stream(lambda: open(local, "rb"))
            if sha != expected.get("sha256") or size != expected.get("size"):
                shutil.rmtree(target, ignore_errors=True)
                raise StoreError(path, f"{rel}: content differs from the manifest; the entry is tampered or damaged")
        (target / MANIFEST_FILE).write_bytes(manifest_bytes)
        _write_json_atomic(done, marker)  # last: a partial download is never reused
        return target

    # ------------------------------------------------------------------ verification

    def verify(self, run_hash: str) -> list[str]:
        """Re-hash every file of a built entry against its manifest; [] when intact.

        Each problem names the file. Also checks the marker pins the manifest,
        that no file was added, and that spec.json + lock.json still hash to the
        entry's own hash.
        """
        run_hash = self.resolve(run_hash)
        found = self.find(run_hash)
        if found is None:
            raise StoreError(self.url, f"run {run_hash} is not in the store (only a build in progress)")
        path = self.entry_path(*found)
        problems: list[str] = []
        try:
            marker_bytes = self.fs.cat_file(posixpath.join(path, COMPLETE_FILE))
        except FileNotFoundError:
            return [f"{COMPLETE_FILE} is missing: the entry was never completed"]
        try:
            marker = json.loads(marker_bytes)
            manifest_bytes = self.fs.cat_file(posixpath.join(path, MANIFEST_FILE))
        except FileNotFoundError:
            return [f"{MANIFEST_FILE} is missing"]
        except ValueError:
            return [f"{COMPLETE_FILE} is not valid JSON"]
        if not isinstance(marker, dict) or marker.get("hash") != run_hash or marker.get("name") != found[1]:
            problems.append(f"{COMPLETE_FILE} names another run than {entry_name(*found)}")
        if not isinstance(marker, dict) or marker.get("manifest_sha256") != hashlib.sha256(manifest_bytes).hexdigest():
            problems.append(f"{MANIFEST_FILE} was modified (its sha256 differs from the one in {COMPLETE_FILE})")
        try:
            manifest = json.loads(manifest_bytes)["files"]
            assert isinstance(manifest, dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            return [*problems, f"{MANIFEST_FILE} is not a valid manifest"]
        on_disk = set(self._files_under(path))
        for rel in sorted(manifest):
            try:
                safe_relative(rel)
            except UnsafePath:
                problems.append(f"{MANIFEST_FILE} names a path outside the entry: {rel!r}")
                continue
            expected = manifest[rel]
            if rel not in on_disk:
                problems.append(f"{rel}: missing")
                continue
            sha, size = sha256_stream(lambda: self.fs.open(posixpath.join(path, rel), "rb"))
            if not isinstance(expected, dict) or sha != expected.get("sha256") or size != expected.get("size"):
                want = expected if isinstance(expected, dict) else {}
                problems.append(f"{rel}: content differs from the manifest (sha256 {sha[:16]}…, {size} bytes; "
                                f"expected {str(want.get('sha256'))[:16]}…, {want.get('size')} bytes)")
        for rel in sorted(on_disk - set(manifest) - NOT_IN_MANIFEST):
            problems.append(f"{rel}: not in the manifest (added after the build finished)")
        if not problems:
            problems += self._check_spec_hash(path, run_hash, found[1])
        return problems

    def _check_spec_hash(self, path: str, run_hash: str, name: str) -> list[str]:
        """spec.json + lock.json must still hash to the entry's hash."""
        try:
            spec = json.loads(self.fs.cat_file(posixpath.join(path, SPEC_FILE)))
            lock = json.loads(self.fs.cat_file(posixpath.join(path, LOCK_FILE)))
        except FileNotFoundError as err:
            return [f"{posixpath.basename(str(err.filename or SPEC_FILE))}: missing"]
        except ValueError:
            return [f"{SPEC_FILE} or {LOCK_FILE} is not valid JSON"]
        problem = _derivation_problem(run_hash, name, spec, lock)
        return [problem] if problem else []

    def _files_under(self, path: str) -> list[str]:
        base = path.rstrip("/") + "/"
        try:
            found = self.fs.find(path)
        except FileNotFoundError:
            return []
        return sorted(p[len(base):] if p.startswith(base) else p for p in found)

    # ------------------------------------------------------------------ building

    def register(self, run, lock_entries: Mapping[str, Any], plan: Mapping[str, Any] | None = None) -> str:
        """Write the run's derivation (spec.json, lock.json, plan.json) so a build job can start from its hash.

        Like a Nix .drv: `<root>/.derivations/<hash>-<name>/`. The launcher
        registers every run it lowers; the job (`python -m runtime.build
        --store URL --hash HASH`, possibly on another machine) then calls
        `begin_build(HASH)`. Registering twice is harmless: the content is
        named by the hash.
        """
        run_hash, name = self._checked(run.hash, run.name)
        document = spec_document(run_hash, name, run.parent_hash, run.spec.model_dump(mode="json"))
        problem = _derivation_problem(run_hash, name, document, dict(lock_entries))
        if problem:
            raise StoreError(self.url, f"refusing to register run {name}: {problem}")
        folder = self._join(DERIVATIONS_DIR, entry_name(run_hash, name))
        files = {LOCK_FILE: dict(lock_entries), **({PLAN_FILE: dict(plan)} if plan is not None else {}),
                 SPEC_FILE: document}  # spec.json last: its presence means "registered"
        for filename, value in files.items():
            data = (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
            if self.is_local:
                pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
                _write_bytes_atomic(pathlib.Path(folder) / filename, data)
            else:
                self.fs.pipe_file(posixpath.join(folder, filename), data)
        return folder

    def derivation(self, run_hash: str) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any] | None]:
        """(name, spec.json, lock.json, plan.json or None) of a registered run; StoreError if absent or damaged."""
        check_hash(run_hash)
        found = [name for h, name in self._registered() if h == run_hash]
        if not found:
            raise StoreError(self.url, f"run {run_hash} is not registered in the store (the launcher registers "
                                       f"runs before their build jobs start)")
        folder = self._join(DERIVATIONS_DIR, entry_name(run_hash, found[0]))
        try:
            spec = json.loads(self.fs.cat_file(posixpath.join(folder, SPEC_FILE)))
            lock = json.loads(self.fs.cat_file(posixpath.join(folder, LOCK_FILE)))
            plan_path = posixpath.join(folder, PLAN_FILE)
            plan = json.loads(self.fs.cat_file(plan_path)) if self.fs.exists(plan_path) else None
        except (FileNotFoundError, ValueError) as err:
            raise StoreError(folder, f"damaged derivation: {err}") from None
        problem = _derivation_problem(run_hash, found[0], spec, lock)
        if problem:
            raise StoreError(folder, f"damaged or tampered derivation: {problem}")
        return found[0], spec, lock, plan

    def _registered(self) -> list[tuple[str, str]]:
        return sorted(filter(None, (parse_entry_name(d) for d in self._listing(self._join(DERIVATIONS_DIR)))))

    def _checked(self, run_hash: str, name: str) -> tuple[str, str]:
        try:
            entry_name(run_hash, name)  # validates both before any I/O
        except UnsafePath as err:
            raise StoreError(self.url, f"refusing a store path outside the store: {err}") from None
        return run_hash, name

    def begin_build(self, run, lock_entries: Mapping[str, Any] | None = None, plan: Mapping[str, Any] | None = None,
                    *, wait: bool = True, timeout: float | None = None) -> Build | None:
        """Take the build lock of `run` and prepare its build folder.

        run: a compiler.specset.CompiledRun (with its lock entries and plan),
          or the hash of a run registered with `register` (what a build job has).
        Returns None when the run is built (already, or by another builder
        while we waited). With wait=False, also None when another builder
        holds the lock right now. The folder gets spec.json, lock.json and
        plan.json; an interrupted build of the same run is resumed in place.
        """
        if isinstance(run, str):
            run_hash = run
            if self.is_built(run_hash):
                return None
            name, document, lock_entries, plan = self.derivation(run_hash)
        else:
            run_hash, name = self._checked(run.hash, run.name)
            document = spec_document(run_hash, name, run.parent_hash, run.spec.model_dump(mode="json"))
            if lock_entries is None:
                raise TypeError("begin_build(run) needs the run's lock entries (compiler.lock.Lock.entries_for)")
        if self.is_built(run_hash):
            return None
        if run_hash in self._held:
            raise StoreError(self.url, f"run {name} ({run_hash[:12]}) is already being built by this process")
        lock = self._lock_for(run_hash)
        if not lock.acquire(wait=wait, timeout=timeout):
            return None
        try:
            if self.is_built(run_hash):
                lock.release()
                return None
            path = self.building_path(run_hash, name)
            self._recover_incomplete(run_hash, name, path)
            resumed = (path / SPEC_FILE).is_file()
            path.mkdir(parents=True, exist_ok=True)
            _write_json_atomic(path / SPEC_FILE, document)
            _write_json_atomic(path / LOCK_FILE, dict(lock_entries))
            if plan is not None:
                _write_json_atomic(path / PLAN_FILE, dict(plan))
        except BaseException:
            lock.release()
            raise
        self._held[run_hash] = (lock, name)
        return Build(self, run_hash, name, path, resumed)

    def _recover_incomplete(self, run_hash: str, name: str, building: pathlib.Path) -> None:
        """A published folder without marker (a crash inside finish_build) goes back to building."""
        final = self.entry_path(run_hash, name)
        if not self.fs.exists(final) or self._has_marker(run_hash, name):
            return
        if self.is_local and not building.exists():
            building.parent.mkdir(parents=True, exist_ok=True)
            os.replace(final, building)
        else:
            self._remove(final)

    def finish_build(self, run_hash: str) -> str:
        """Manifest every file, publish the folder as `<hash>-<name>/`, write the marker last."""
        if run_hash not in self._held:
            raise StoreError(self.url, f"run {run_hash} is not being built by this process (call begin_build first)")
        lock, name = self._held[run_hash]
        building = self.building_path(run_hash, name)
        spec = json.loads((building / SPEC_FILE).read_text(encoding="utf-8"))
        if spec.get("hash") != run_hash:
            raise StoreError(str(building), f"{SPEC_FILE} names run {spec.get('hash')}, not {run_hash}")
        manifest = {"format": STORE_FORMAT, "files": _local_manifest(building)}
        _write_json_atomic(building / MANIFEST_FILE, manifest)
        manifest_sha256 = hashlib.sha256((building / MANIFEST_FILE).read_bytes()).hexdigest()
        final = self.entry_path(run_hash, name)
        if self.fs.exists(final):  # left over by a crash; never a built entry (we hold the lock and checked)
            self._remove(final)
        if self.is_local:
            os.replace(building, final)
        else:
            remote = self._remote_building_path(run_hash, name)
            if self.fs.exists(remote):
                self.fs.rm(remote, recursive=True)
            for rel in sorted([*manifest["files"], MANIFEST_FILE]):
                self.fs.makedirs(posixpath.dirname(posixpath.join(remote, rel)), exist_ok=True)
                self.fs.put_file(str(building / rel), posixpath.join(remote, rel))
            self.fs.mv(remote, final, recursive=True)
        marker = {"hash": run_hash, "name": name, "manifest_sha256": manifest_sha256, "format": STORE_FORMAT}
        self._write_marker(final, marker)
        del self._held[run_hash]
        lock.release()
        if not self.is_local:
            shutil.rmtree(building, ignore_errors=True)
        return final

    def abort_build(self, run_hash: str, discard: bool = False) -> None:
        """Release the build lock; keep the folder for a resume unless `discard`."""
        lock, name = self._held.pop(run_hash)
        try:
            if discard:
                shutil.rmtree(self.building_path(run_hash, name), ignore_errors=True)
        finally:
            lock.release()

    def _write_marker(self, final: str, marker: dict[str, Any]) -> None:
        data = (json.dumps(marker, indent=2, sort_keys=True) + "\n").encode()
        if self.is_local:
            _write_bytes_atomic(pathlib.Path(final) / COMPLETE_FILE, data)
        else:
            self.fs.pipe_file(posixpath.join(final, COMPLETE_FILE), data)

    def _lock_for(self, run_hash: str) -> _BuildLock:
        path = self._join(LOCKS_DIR, f"{check_hash(run_hash)}.lock")
        if self.is_local:
            return _LocalLock(pathlib.Path(path))
        return _FsspecLock(self.fs, path)

    # ------------------------------------------------------------------ garbage collection

    def gc(self, keep: Iterable[str], *, dry_run: bool = False) -> list[EntryInfo]:
        """Remove every entry not reachable from `keep` (a run's parents, by hash, are reachable).

        Builds in progress are removed only when no builder holds their lock.
        Returns what was (or, with dry_run, would be) removed.
        """
        entries = self.ls()
        spec_parents = {e.hash: e.parent_hash for e in entries if e.status in ("built", "registered")}
        reachable: set[str] = set()
        frontier = [check_hash(h) for h in keep if h]
        while frontier:
            current = frontier.pop()
            if current in reachable:
                continue
            reachable.add(current)
            parent = spec_parents.get(current)
            if parent:
                frontier.append(parent)
        removed = []
        for run_hash, name in self._registered():  # derivations follow their runs
            if run_hash not in reachable and not dry_run and run_hash not in self._held:
                self.fs.rm(self._join(DERIVATIONS_DIR, entry_name(run_hash, name)), recursive=True)
        for entry in entries:
            if entry.hash in reachable:
                continue
            if entry.status == "registered":
                removed.append(entry)
                continue
            if entry.status == "built":
                if not dry_run:
                    self._remove(self.entry_path(entry.hash, entry.name))
                removed.append(entry)
                continue
            # A build in progress, or a publish cut short: only when no builder holds its lock.
            lock = self._lock_for(entry.hash)
            if entry.hash in self._held or not lock.acquire(wait=False):
                continue
            try:
                if not dry_run and entry.status == "building":
                    shutil.rmtree(self.building_path(entry.hash, entry.name), ignore_errors=True)
                    if not self.is_local:
                        with contextlib.suppress(FileNotFoundError):
                            self.fs.rm(self._remote_building_path(entry.hash, entry.name), recursive=True)
                elif not dry_run:
                    self._remove(self.entry_path(entry.hash, entry.name))
            finally:
                lock.release()
            removed.append(entry)
        return removed

    def _remove(self, path: str) -> None:
        """Unpublish first (rename to .trash, or drop the marker), then delete."""
        if self.is_local:
            trash = pathlib.Path(self._join(TRASH_DIR))
            trash.mkdir(parents=True, exist_ok=True)
            target = trash / f"{posixpath.basename(path)}.{uuid.uuid4().hex}"
            os.replace(path, target)
            shutil.rmtree(target, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(posixpath.join(path, COMPLETE_FILE))
            self.fs.rm(path, recursive=True)


# ---------------------------------------------------------------------- build locks


class _BuildLock:
    def acquire(self, wait: bool = True, timeout: float | None = None) -> bool: ...

    def release(self) -> None: ...


class _LocalLock(_BuildLock):
    """fcntl.flock on <root>/.locks/<hash>.lock: exclusive across processes, freed when the holder dies."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self, wait: bool = True, timeout: float | None = None) -> bool:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if not wait or (deadline is not None and time.monotonic() >= deadline):
                    os.close(fd)
                    return False
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


_CREATE_GUARD = threading.Lock()  # the memory filesystem commits "xb" files on close: serialize in-process


class _FsspecLock(_BuildLock):
    """A lock object created with exclusive-create; a lock left by a dead process on this host is broken."""

    def __init__(self, fs, path: str):
        self.fs = fs
        self.path = path
        self.token = uuid.uuid4().hex

    def acquire(self, wait: bool = True, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": self.token}).encode()
        self.fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
        while True:
            try:
                with _CREATE_GUARD, self.fs.open(self.path, "xb") as f:
                    f.write(owner)
                return True
            except FileExistsError:
                if self._holder_is_dead():
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm(self.path)
                    continue
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(0.05)

    def _holder_is_dead(self) -> bool:
        try:
            holder = json.loads(self.fs.cat_file(self.path))
        except (FileNotFoundError, ValueError):
            return False
        if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
            return False
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            if json.loads(self.fs.cat_file(self.path)).get("token") == self.token:
                self.fs.rm(self.path)


# ---------------------------------------------------------------------- helpers


def _derivation_problem(run_hash: str, name: str, spec: Any, lock: Any) -> str | None:
    """Why spec.json + lock.json are not the run `run_hash` (None when they hash to it).

    A lock.json without `inputs` (a run stored without a lock) is checked by
    name and hash fields only.
    """
    from compiler.canonical import run_hash as compute_hash
    from compiler.spec import RunSpec

    if not isinstance(spec, dict) or spec.get("hash") != run_hash or spec.get("name") != name:
        got = (spec.get("hash"), spec.get("name")) if isinstance(spec, dict) else None
        return f"{SPEC_FILE} names run {got}, not {run_hash}/{name}"
    if not isinstance(lock, dict) or "inputs" not in lock:
        return None
    try:
        recomputed = compute_hash(RunSpec.model_validate(spec["spec"]), spec.get("parent_hash"), lock["inputs"])
    except Exception as err:  # noqa: BLE001 - any unreadable spec is damage
        return f"{SPEC_FILE}: not a valid run spec ({type(err).__name__})"
    if recomputed != run_hash:
        return f"{SPEC_FILE}/{LOCK_FILE}: hash to {recomputed}, not to the run's hash"
    return None


def _local_manifest(folder: pathlib.Path) -> dict[str, dict[str, Any]]:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(folder).as_posix()
        if rel in NOT_IN_MANIFEST:
            continue
        if path.is_symlink():
            raise StoreError(str(path), "store entries may not contain symbolic links")
        sha, size = sha256_stream(lambda: open(path, "rb"))
        files[rel] = {"sha256": sha, "size": size}
    return files


def _write_bytes_atomic(path: pathlib.Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes 0600
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def _write_json_atomic(path: pathlib.Path, value: Any) -> None:
    _write_bytes_atomic(path, (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))
