"""Publish a folder all at once: build it under a temporary name, then rename.

A corpus, tokenizer or shard folder either exists complete or not at all, so a
crash or a concurrent builder never leaves a half-written artifact where a
later run would take it for a finished one. The temporary folder lives beside
the destination (same filesystem), which makes the final rename atomic.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def building(destination: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success rename it to `destination`.

    If `destination` already exists when the build finishes (another process
    published it first, or a stale copy is being replaced), the old folder is
    first renamed aside and then removed, so readers never see a mix of two
    builds. On an exception the temporary folder is removed and nothing is
    published.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{destination.name}.build-", dir=destination.parent))
    os.chmod(stage, 0o755)  # mkdtemp makes it private; published artifacts are shared
    try:
        yield stage
        publish(stage, destination)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


@contextlib.contextmanager
def exclusive(destination: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on building `destination` (a lock file beside it) for the block.

    Two processes (two runs, two hosts' processes of one run) that need the
    same artifact at once: the first builds it, the second waits here and
    then finds it finished, so an artifact is built once. fcntl locks are
    released by the kernel when a process dies, so a crashed builder never
    blocks the next one.
    """
    import fcntl  # noqa: PLC0415 (POSIX)

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with open(destination.parent / f".{destination.name}.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def publish(stage: Path, destination: Path) -> None:
    """Rename `stage` to `destination`, moving any existing folder out of the way."""
    if destination.exists():
        retired = Path(
            tempfile.mkdtemp(prefix=f".{destination.name}.old-", dir=destination.parent)
        )
        os.replace(destination, retired / "old")
        os.replace(stage, destination)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        try:
            os.replace(stage, destination)
        except OSError:
            if not destination.is_dir():
                raise
            # Another process published the same artifact between our check and
            # the rename; its content is what ours would have been.
            shutil.rmtree(stage, ignore_errors=True)
