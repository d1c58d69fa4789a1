"""A real S3-compatible server on 127.0.0.1 for store tests: moto's server, started and stopped by the test.

The store reaches it exactly as a user's `s3://` store reaches S3: through
s3fs and botocore, with the endpoint and credentials in the variables botocore
reads (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...). moto implements conditional
writes (PutObject `If-None-Match: *` answers 412), which the build lease uses.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def client_environment(endpoint: str) -> dict[str, str]:
    """What botocore (under s3fs) reads to reach the server; moto accepts any key pair."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@contextlib.contextmanager
def moto_server(log_dir: pathlib.Path, environment: dict[str, str] | None = None) -> Iterator[str]:
    """Run `moto_server` on a free port; yields its endpoint URL; stops it (and only it) afterwards.

    environment: extra settings of the server (INITIAL_NO_AUTH_ACTION_COUNT=0 turns authentication on).
    """
    port = free_port()
    executable = pathlib.Path(sys.executable).with_name("moto_server")
    with local_server([str(executable), "-H", "127.0.0.1", "-p", str(port)], port, "/moto-api/",
                      log_dir / f"moto-{port}.log", {"MOTO_PORT": str(port), **(environment or {})}) as endpoint:
        yield endpoint


@contextlib.contextmanager
def local_server(argv: list[str], port: int, ready_path: str, log_path: pathlib.Path,
                 environment: dict[str, str] | None = None) -> Iterator[str]:
    """Start a server process on 127.0.0.1:`port`, wait (bounded) until `ready_path` answers, stop it after.

    Yields its endpoint URL. Stops only the process it started (terminate, then kill).
    """
    endpoint = f"http://127.0.0.1:{port}"
    log = open(log_path, "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(argv, stdout=log, stderr=log, env={**os.environ, **(environment or {})})
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}{ready_path}", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{pathlib.Path(argv[0]).name} did not start (log: {log.name})") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)
        log.close()


def new_bucket(endpoint: str) -> str:
    """Create a fresh bucket on the server (through s3fs, as a user would) and return its name."""
    import s3fs

    name = f"runix-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=endpoint, skip_instance_cache=True)
    fs.mkdir(name)
    return name
