"""Shared test helpers: a minimal valid run, and the real CLI in a subprocess."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

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
