"""Build leases: one builder per run hash at a time, on a local folder or a bucket.

Local stores use fcntl.flock on `<root>/.locks/<hash>.lock`: exclusive across
processes and released by the kernel when the holder dies, so a crash never
leaves a stale lock.

Object stores have no flock and no rename, so a build lock there is a lease:
an object `<root>/.locks/<hash>.lease.<epoch>` holding its holder, the time of
its last heartbeat and its expiry. Taking it is one conditional write that
fails if the object exists:

  * S3: PutObject with `If-None-Match: *` (s3fs `put_file/pipe_file(..., mode="create")`
    → aiobotocore `put_object(IfNoneMatch="*")`; a 412 becomes FileExistsError),
  * GCS: an upload with `ifGenerationMatch=0` (gcsfs `pipe_file(..., mode="create")`;
    gcsfs turns the 412 into FileExistsError),
  * memory:// (unit tests): `open(..., "xb")` in one process.

Only one of several builders racing for epoch n + 1 can create it. The holder
rewrites its own object every `ttl / 3` seconds (nobody else writes that key);
a holder that died — on this machine or any other — stops doing so, its lease
expires, and the next builder takes over by creating epoch n + 1 (no delete
needed, so two takers can never both win). A holder checks `still_held()`
before it publishes: a holder whose lease was taken over while it stalled
stops instead of writing next to the new holder. Expiry is judged on each
builder's own clock, so the machines' clocks must agree to well within the
ttl (NTP keeps cluster nodes within milliseconds; the default ttl is 60 s).

A waiter gives up after its timeout with `LeaseTimeout`, naming the holder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import posixpath
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

DEFAULT_TTL_S = 60.0
POLL_S = 0.5


class LeaseTimeout(RuntimeError):
    """A waiter gave up: another builder held the run's lease for the whole wait."""


class LeaseLost(RuntimeError):
    """The holder's lease expired and another builder took it over."""


class BuildLock:
    def acquire(self, wait: bool = True, timeout: float | None = None) -> bool: ...

    def release(self) -> None: ...

    def still_held(self) -> bool:
        return True

    def holder(self) -> str:
        return "another builder"


class LocalLock(BuildLock):
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

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "another builder"
        except OSError:
            return "another builder"


_MEMORY_CREATE = threading.Lock()  # memory:// checks and writes in two steps: one creator at a time in-process
_EPOCH = re.compile(r"^(?P<hash>[0-9a-f]{64})\.lease\.(?P<epoch>[0-9]{8})$")


def create_exclusive(fs, path: str, data: bytes) -> bool:
    """Write `path` only if no object has that name (one conditional request); False if one exists."""
    from fsspec.implementations.memory import MemoryFileSystem

    try:
        if isinstance(fs, MemoryFileSystem):
            with _MEMORY_CREATE:
                fs.pipe_file(path, data, mode="create")
        else:
            fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    return True


class ObjectLease(BuildLock):
    """A lease object created with a conditional write, renewed by a heartbeat, taken over after expiry."""

    def __init__(self, fs, folder: str, run_hash: str, *, ttl: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.time):
        if ttl <= 0:
            raise ValueError(f"lease ttl must be > 0 seconds, got {ttl}")
        self.fs = fs
        self.folder = folder
        self.run_hash = run_hash
        self.ttl = ttl
        self.clock = clock
        self.token = uuid.uuid4().hex
        self.epoch: int | None = None
        self._last_seen: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._lost = threading.Event()

    # ------------------------------------------------------------------ reading

    def _path(self, epoch: int) -> str:
        return posixpath.join(self.folder, f"{self.run_hash}.lease.{epoch:08d}")

    def _epochs(self) -> list[int]:
        try:
            names = [posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.folder, detail=False, refresh=True)]
        except TypeError:  # filesystems without a refresh argument
            names = [posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.folder, detail=False)]
        except FileNotFoundError:
            return []
        epochs = []
        for name in names:
            match = _EPOCH.match(name)
            if match and match["hash"] == self.run_hash:
                epochs.append(int(match["epoch"]))
        return sorted(epochs)

    def _read(self, epoch: int) -> dict[str, Any] | None:
        try:
            value = json.loads(self.fs.cat_file(self._path(epoch)))
        except FileNotFoundError:
            return None
        except ValueError:
            return {}  # unreadable: treated as expired
        return value if isinstance(value, dict) else {}

    def _current(self) -> tuple[int, dict[str, Any] | None]:
        """(highest epoch, its content) — (0, None) when there is no lease object."""
        epochs = self._epochs()
        while epochs:
            content = self._read(epochs[-1])
            if content is not None:
                return epochs[-1], content
            epochs.pop()  # released between the listing and the read
        return 0, None

    def _live(self, content: dict[str, Any] | None) -> bool:
        if not content:
            return False
        expires = content.get("expires")
        if not isinstance(expires, (int, float)) or self.clock() >= expires:
            return False
        return not _dead_on_this_host(content)

    # ------------------------------------------------------------------ taking and giving back

    def _document(self, epoch: int, acquired: float) -> bytes:
        now = self.clock()
        return json.dumps({"hash": self.run_hash, "epoch": epoch, "token": self.token, "host": socket.gethostname(),
                           "machine": _machine(), "pid": os.getpid(), "acquired": acquired, "heartbeat": now, "expires": now + self.ttl,
                           "ttl_s": self.ttl}, sort_keys=True).encode()

    def acquire(self, wait: bool = True, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            epoch, content = self._current()
            if not self._live(content):
                acquired = self.clock()
                if create_exclusive(self.fs, self._path(epoch + 1), self._document(epoch + 1, acquired)):
                    self.epoch = epoch + 1
                    self._acquired = acquired
                    self._forget_older(epoch + 1)
                    self._start_heartbeat()
                    return True
                continue  # another builder created that epoch first: look again
            self._last_seen = content
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(POLL_S if deadline is None else max(0.0, min(POLL_S, deadline - time.monotonic())))

    def holder(self) -> str:
        seen = self._last_seen or {}
        expires = seen.get("expires")
        left = f", lease runs out in {max(0.0, expires - self.clock()):.0f} s unless renewed" if isinstance(
            expires, (int, float)) else ""
        return f"{seen.get('host', '?')} pid {seen.get('pid', '?')} (epoch {seen.get('epoch', '?')}{left})"

    def still_held(self) -> bool:
        """True while no later epoch exists and our own object is ours and unexpired."""
        if self.epoch is None or self._lost.is_set():
            return False
        epoch, content = self._current()
        ours = epoch == self.epoch and content is not None and content.get("token") == self.token
        if not ours or not self._live(content):
            self._lost.set()
            return False
        return True

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        if self.epoch is not None:
            content = self._read(self.epoch)
            if content is not None and content.get("token") == self.token:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(self._path(self.epoch))
        self.epoch = None

    # ------------------------------------------------------------------ heartbeat

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._lost.clear()
        self._heartbeat = threading.Thread(target=self._beat, name=f"lease-{self.run_hash[:12]}", daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            epoch = self.epoch
            if epoch is None:
                return
            try:
                if self._epochs()[-1:] != [epoch]:  # taken over while we stalled: never write again
                    self._lost.set()
                    return
                self.fs.pipe_file(self._path(epoch), self._document(epoch, self._acquired))
            except Exception:  # noqa: BLE001 - a failed renewal is retried; expiry is the bound
                continue

    def _forget_older(self, epoch: int) -> None:
        """Remove expired lease objects of earlier epochs (their holders stop when they see a later one)."""
        for old in self._epochs():
            if old < epoch:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(self._path(old))


def _machine() -> str:
    """This kernel boot and process namespace: a pid means the same process only where this matches.

    A hostname alone is not enough: a restarted pod has its predecessor's
    hostname but a new pid namespace (and maybe another node).
    """
    try:
        boot = pathlib.Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}:{namespace}"


def _dead_on_this_host(content: dict[str, Any]) -> bool:
    """A holder in this very kernel and pid namespace whose process is gone: no need to wait for its expiry."""
    machine = _machine()
    if not machine or content.get("machine") != machine or not isinstance(content.get("pid"), int):
        return False
    if content.get("pid") == os.getpid():
        return False  # another lease object of this process (a second Store): alive
    try:
        os.kill(content["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
