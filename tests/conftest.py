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
