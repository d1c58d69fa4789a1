"""dataprep is what `runix lock` prepares data with, so it must never pull in jax or grain."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import dataprep

ROOT = Path(__file__).resolve().parents[2]


def test_no_dataprep_module_imports_jax_or_grain():
    names = sorted(f"dataprep.{m.name}" for m in pkgutil.iter_modules(dataprep.__path__))
    assert "dataprep.shards" in names and "dataprep.tokenizer" in names
    code = ("import importlib, json, sys\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in ('jax', 'jaxlib', 'flax', 'optax', 'grain') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
