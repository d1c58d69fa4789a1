"""Build locks: one builder per run hash at a time.

Local stores use fcntl.flock on `<root>/.locks/<hash>.lock`: exclusive across
processes and released by the kernel when the holder dies, so a crash never
leaves a stale lock. Other fsspec stores get a lock object created with
exclusive-create (`open(..., "xb")`), atomic on the local and memory
filesystems; a lock left by a dead process on this host is broken.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import posixpath
import socket
import threading
import time
import uuid


class BuildLock:
    def acquire(self, wait: bool = True, timeout: float | None = None) -> bool: ...

    def release(self) -> None: ...


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


_CREATE_GUARD = threading.Lock()  # the memory filesystem commits "xb" files on close: serialize in-process


class FsspecLock(BuildLock):
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
