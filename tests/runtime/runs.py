"""Tiny runs for the runtime tests: specs that train in about a second, run directories, the CLI in a subprocess.

The model is smaller than the `tiny` preset (vocab 512, d_model 32, GQA with
2 kv heads) so that a run of a dozen steps costs little more than its
compilation; the batches are `runtime.device_batches.SyntheticBatches`, so no
corpus has to be prepared.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

from compiler.canonical import run_hash
from compiler.resolve import resolve_run
from compiler.spec import RunSpec

REPO = pathlib.Path(__file__).resolve().parents[2]

MODEL = {"vocab_size": 512, "d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "d_ff": 64}


def tiny_spec(name: str = "t", *, steps: int = 12, init: dict | None = None, mesh: dict | None = None,
              checkpoint: dict | None = None, **overrides) -> RunSpec:
    """A resolved RunSpec of a small model, 4 sequences × 32 tokens per step."""
    raw = {
        "name": name,
        "model": {**MODEL, **overrides.pop("model", {})},
        "data": {"sources": {"code": {"uri": "builtin://code", "role": "code", "share": 1.0, "max_repeats": 100}},
                 "document_masking": True},
        "schedule": {"phases": [{"kind": "warmup", "length": 3, "peak": 3e-3}, {"kind": "cosine", "floor": 3e-4}]},
        "batch": {"sequences": 4, "sequence_length": 32},
        "steps": steps,
        "init": init or {"kind": "scratch", "seed": 0},
        "mesh": mesh or {"accelerator": "cpu", "chips": 1},
        "checkpoint": checkpoint or {"every": 4, "keep": 2, "digest_every": 2},
        **overrides,
    }
    return resolve_run(RunSpec.model_validate(raw))


def hash_of(spec: RunSpec, parent_hash: str | None = None) -> str:
    return run_hash(spec, parent_hash)


def write_run_dir(run_dir: pathlib.Path, spec: RunSpec, parent_hash: str | None = None) -> str:
    """A run directory with the spec.json the compiler would write; returns the run hash."""
    h = hash_of(spec, parent_hash)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.json").write_text(json.dumps(
        {"hash": h, "name": spec.name, "parent_hash": parent_hash, "spec": spec.model_dump(mode="json")}))
    return h


def trainer_command(run_dir: pathlib.Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "runtime", "--run-dir", str(run_dir), "--batches", "synthetic", "--no-progress",
            *extra]


def run_trainer(run_dir: pathlib.Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m runtime` in a fresh process (the numerics environment is pinned by the entry point itself)."""
    return subprocess.run(trainer_command(run_dir, *extra), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=_clean_env())


def start_trainer(run_dir: pathlib.Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(trainer_command(run_dir, *extra), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_clean_env())


def _clean_env() -> dict[str, str]:
    """The test process's environment minus anything jax or XLA would read (the trainer pins its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_", "PJRT_"))}


def kill_at_step(process: subprocess.Popen, metrics: pathlib.Path, step: int, timeout: float = 120) -> int:
    """SIGKILL `process` once metrics.jsonl shows `step` done; returns the last step it had logged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"trainer exited ({process.returncode}) before step {step}: {process.stderr.read()}")
        last = last_logged_step(metrics)
        if last is not None and last >= step:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            return last
        time.sleep(0.01)
    process.kill()
    raise AssertionError(f"trainer did not reach step {step} in {timeout} s")


def last_logged_step(metrics: pathlib.Path) -> int | None:
    try:
        lines = metrics.read_text().splitlines()
    except FileNotFoundError:
        return None
    steps = []
    for line in lines:
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:
            pass
    return max(steps) if steps else None


def digest_json(run_dir: pathlib.Path) -> dict:
    return json.loads((run_dir / "digest.json").read_text())
