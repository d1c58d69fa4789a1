"""Spec-language speed: validate + hash 1,000 expanded runs, and CLI start-up.

Prints runs/s for the compiler front half (parse → expand → validate →
resolve → hash) on a generated 1,000-run matrix, and the wall time of
`runix hash specs/tiny` against `python -c "import jax"` measured in the same
run (median of several), with their ratio (goal: under 0.5).

    .venv/bin/python benchmarks/bench_spec.py
"""

from __future__ import annotations

import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from goals import report

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNIX = pathlib.Path(sys.executable).with_name("runix")


def matrix_spec(runs_per_axis: int = 10) -> str:
    """A 10 × 10 × 10 matrix = 1,000 runs, each extending a base."""
    labels = [str(i) for i in range(runs_per_axis)]
    lines = [
        "runs:",
        "  - name: base",
        "    abstract: true",
        "    model: {preset: tiny}",
        "    batch: {sequences: 8, sequence_length: 128}",
        "    steps: 100",
        "    data: {sources: {code: {uri: 'builtin://code', role: code, share: 0.5}, text: {uri: 'builtin://text', role: text, share: 0.5}}}",
        "    schedule: {phases: [{kind: warmup, length: 10, peak: 1e-3}, {kind: cosine, floor: 1e-4}]}",
        "  - name: r-{a}-{b}-{c}",
        "    extends: base",
        "    matrix:",
        "      a: {" + ", ".join(f"'{l}': {{init: {{kind: scratch, seed: {l}}}}}" for l in labels) + "}",
        "      b: {" + ", ".join(f"'{l}': {{data: {{seed: {l}}}}}" for l in labels) + "}",
        "      c: {" + ", ".join(f"'{l}': {{steps: {100 + int(l)}}}" for l in labels) + "}",
    ]
    return "\n".join(lines) + "\n"


# Python's bytecode cache on, as a user's Python runs (see benchmarks/bench_dry_run.py for why it matters).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def median_seconds(command: list[str], repeats: int) -> float:
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, env=CHILD_ENV)  # warm: caches and .pyc files
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True, env=CHILD_ENV)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    from compiler.specset import load_spec_set

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "matrix.yaml"
        path.write_text(matrix_spec())
        times = []
        for _ in range(3):
            start = time.perf_counter()
            spec_set = load_spec_set([path])
            times.append(time.perf_counter() - start)
        count = len(spec_set.runs)
    elapsed = statistics.median(times)
    print(f"validate+hash: {count} runs in {elapsed:.3f} s = {count / elapsed:,.0f} runs/s (median of 3)")
    report("validate+hash throughput (1,000-run matrix)", round(count / elapsed), unit=" runs/s")

    runix = median_seconds([str(RUNIX), "hash", "specs/tiny"], 5)
    jax = median_seconds([sys.executable, "-c", "import jax"], 5)
    print(f"`runix hash specs/tiny`: {runix:.3f} s   `python -c 'import jax'`: {jax:.3f} s   "
          f"ratio: {runix / jax:.2f} (goal < 0.5)")
    return 0 if report("runix hash specs/tiny / import jax", round(runix / jax, 3), "< 0.5") else 1


if __name__ == "__main__":
    sys.exit(main())
