"""Shared test helpers: a minimal valid run, and the CLI in this process (`cli`) or in a subprocess (`run_cli`)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys

import pytest

# In-process jax runs on the CPU, as the trainer's pinned environment has it (runtime.numerics): with libtpu
# installed (requirements.lock, for ahead-of-time TPU compiles) jax would otherwise look for a local TPU
# first, warn about its missing environment and take libtpu's one-process lockfile.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# gcsfs reads this once, at import: the GCS test server (tests/gcsserver.py) has no gRPC endpoint to probe.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

REPO = pathlib.Path(__file__).resolve().parents[1]

MINIMAL_RUN = """\
runs:
  - name: base
    model: {preset: tiny}
    batch: {sequences: 8, sequence_length: 128}
    steps: 10
    data:
      sources:
        code: {uri: "builtin://code", role: code, share: 1.0}
    schedule:
      phases:
        - {kind: warmup, length: 2, peak: 1e-3}
        - {kind: cosine, floor: 1e-4}
"""


def pytest_configure(config):
    """Tests run jax on the CPU unless they ask for another platform themselves.

    With jax[tpu] installed (requirements.lock pins libtpu), an in-process
    `import jax` probes for a TPU and blocks on /tmp/libtpu_lockfile while any
    other process on the machine holds it.
    """
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
# gcsfs reads this once, at import: the GCS test server (tests/gcsserver.py) has no gRPC endpoint to probe.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec file under tmp_path and return its path."""

    def write(text: str, name: str = "spec.yaml") -> pathlib.Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
        return path

    return write


def run_cli(*args: str, cwd: pathlib.Path | None = None, env: dict | None = None, timeout: float = 120):
    """Run the installed `runix` entry point the way a user does."""
    runix = pathlib.Path(sys.executable).with_name("runix")
    return subprocess.run(
        [str(runix), *map(str, args)], cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@dataclasses.dataclass
class Result:
    """One `runix` call's exit code and output, named as subprocess.run names them."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(monkeypatch, capsys):
    """`runix ...` in this process (fast): cli(*args, cwd=folder) -> Result. run_cli runs the real entry point."""
    from compiler.cli import main  # here, so that a test without `cli` never loads the CLI

    def call(*args, cwd):
        monkeypatch.chdir(cwd)
        monkeypatch.setenv("COLUMNS", "200")
        capsys.readouterr()
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exit:
            code = exit.code
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return call


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """A real S3-compatible server (moto) on 127.0.0.1 for the whole session; stopped at its end."""
    from tests.s3server import moto_server

    with moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch) -> dict[str, str]:
    """The variables botocore reads to reach the server, set for this process and returned for subprocesses."""
    from tests.s3server import client_environment

    return _exported(client_environment(s3_endpoint), monkeypatch)


@pytest.fixture
def s3_store_url(s3_endpoint, s3_env) -> str:
    """`s3://<a new bucket>/store` on the test server."""
    from tests.s3server import new_bucket

    return f"s3://{new_bucket(s3_endpoint)}/store"


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory):
    """A real GCS JSON API server (fake-gcs-server) on 127.0.0.1 for the whole session; stopped at its end."""
    from tests.gcsserver import gcs_server

    with gcs_server(tmp_path_factory.mktemp("fake-gcs")) as endpoint:
        yield endpoint


@pytest.fixture
def gcs_env(gcs_endpoint, monkeypatch) -> dict[str, str]:
    """The variables gcsfs reads to reach the server, set for this process and returned for subprocesses."""
    from tests.gcsserver import client_environment

    return _exported(client_environment(gcs_endpoint), monkeypatch)


def _exported(env: dict[str, str], monkeypatch) -> dict[str, str]:
    """Set a client's variables in this process for the test (undone after it); return them for subprocesses."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def gcs_store_url(gcs_env) -> str:
    """`gs://<a new bucket>/store` on the test server."""
    from tests.gcsserver import new_bucket

    return f"gs://{new_bucket()}/store"


@pytest.fixture(params=["s3", "gcs"])
def bucket_store_url(request) -> str:
    """A new bucket's store on each object store the project supports: S3 (moto) and GCS (fake-gcs-server)."""
    return request.getfixturevalue(f"{request.param}_store_url")


@pytest.fixture
def bucket_env(bucket_store_url, request) -> dict[str, str]:
    """The client variables of `bucket_store_url`'s server, for subprocesses."""
    return request.getfixturevalue("s3_env" if bucket_store_url.startswith("s3://") else "gcs_env")
