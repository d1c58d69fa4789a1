"""Wall time of `runix compile DIR --dry-run` on a 64-run spec set, against `python -c "import jax"`.

Why: the dry run is what a user runs before every launch, on a laptop, to price
and check a 64-run ablation; it must feel instant and must never import jax.
The target: under half the time of importing jax alone, measured in the same
run on the same machine (so the ratio, not the seconds, is what is compared).

The spec set is generated in a temporary folder: the "To Code, or Not To
Code?" 470M shape on a v5e-256 slice, a 4 × 4 × 4 matrix (code share × seed ×
peak LR) = 64 runs. Each command runs as a fresh subprocess (output to
/dev/null), alternating between the two so that machine load hits both alike;
the median of `--reps` runs is reported, in wall time (the target) and in CPU
time (user + system of the child, steadier on a busy machine). One extra run under `-X importtime`
checks that no jax module is imported.

    .venv/bin/python benchmarks/bench_dry_run.py            # 7 reps each
    .venv/bin/python benchmarks/bench_dry_run.py --reps 15

Exit 1 when the ratio is not under 0.5 or jax was imported.
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_RATIO = 0.5

SPEC_SET = """\
# 64 runs: the 470M shape of "To Code, or Not To Code?" on a v5e-256 slice, 4 code shares x 4 seeds x 4 peak LRs.
runs:
  - name: base
    abstract: true
    model: {preset: to-code-470m, remat: full}
    dtypes: {params: float32, compute: bfloat16}
    kernels: {cross_entropy: chunked, cross_entropy_chunk: 1024}
    batch: {sequences: 512, sequence_length: 8192}
    mesh: {accelerator: tpu-v5e, chips: 256, topology: 16x16, axes: {fsdp: 256}}
    steps: 47684
    data:
      sources:
        text: {uri: "tfds://slimpajama/train", role: text, declared_tokens: 503B}
        code: {uri: "tfds://the_stack/train", role: code, declared_tokens: 139B, max_repeats: 2}
    schedule:
      phases:
        - {kind: warmup, length: 1325, peak: 3e-4}
        - {kind: cosine, floor: 3e-5}

  - name: bench-code{code}-seed{seed}-lr{lr}
    extends: base
    description: Code share {code}%, seed {seed}, peak LR {lr}.
    init: {kind: scratch}
    matrix:
      code:
        "0":  {data: {sources: {code: {share: 0.0}, text: {share: 1.0}}}}
        "25": {data: {sources: {code: {share: 0.25}, text: {share: 0.75}}}}
        "50": {data: {sources: {code: {share: 0.5}, text: {share: 0.5}}}}
        "75": {data: {sources: {code: {share: 0.75}, text: {share: 0.25}}}}
      seed:
        "0": {init: {seed: 0}, data: {seed: 0}}
        "1": {init: {seed: 1}, data: {seed: 1}}
        "2": {init: {seed: 2}, data: {seed: 2}}
        "3": {init: {seed: 3}, data: {seed: 3}}
      lr:
        "1e-4": {schedule: {phases: [{kind: warmup, length: 1325, peak: 1e-4}, {kind: cosine, floor: 1e-5}]}}
        "3e-4": {schedule: {phases: [{kind: warmup, length: 1325, peak: 3e-4}, {kind: cosine, floor: 3e-5}]}}
        "6e-4": {schedule: {phases: [{kind: warmup, length: 1325, peak: 6e-4}, {kind: cosine, floor: 6e-5}]}}
        "1e-3": {schedule: {phases: [{kind: warmup, length: 1325, peak: 1e-3}, {kind: cosine, floor: 1e-4}]}}
"""


def runix_executable() -> str:
    beside = pathlib.Path(sys.executable).with_name("runix")
    found = str(beside) if beside.exists() else shutil.which("runix")
    if not found:
        raise SystemExit("runix is not installed (pip install -e . in the project's venv)")
    return found


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `command` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="timed runs of each command (median reported)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="runix-bench-") as tmp:
        spec_dir = pathlib.Path(tmp) / "specs"
        spec_dir.mkdir()
        (spec_dir / "bench.yaml").write_text(SPEC_SET)
        dry_run = [runix_executable(), "compile", str(spec_dir), "--dry-run"]
        import_jax = [sys.executable, "-c", "import jax"]

        check = subprocess.run(dry_run, capture_output=True, text=True)
        if check.returncode != 0 or "64 to build" not in check.stdout:
            print(check.stdout[-2000:], check.stderr[-2000:], sep="\n")
            raise SystemExit("the generated spec set did not compile to 64 runs")
        traced = subprocess.run([sys.executable, "-X", "importtime", "-m", "compiler.cli", *dry_run[1:]],
                                capture_output=True, text=True)
        jax_modules = sorted({line.rsplit("|", 1)[-1].strip() for line in traced.stderr.splitlines()
                              if line.rsplit("|", 1)[-1].strip().split(".")[0] in ("jax", "jaxlib")})

        timed(dry_run), timed(import_jax)  # warm the OS file cache for both
        dry_runs, jax_runs = [], []
        for _ in range(args.reps):
            dry_runs.append(timed(dry_run))
            jax_runs.append(timed(import_jax))

    dry_times, jax_times = [wall for wall, _ in dry_runs], [wall for wall, _ in jax_runs]
    dry, jax = statistics.median(dry_times), statistics.median(jax_times)
    ratio = dry / jax
    cpu_ratio = statistics.median(cpu for _, cpu in dry_runs) / statistics.median(cpu for _, cpu in jax_runs)
    ok = ratio < TARGET_RATIO and not jax_modules
    print(f"runix compile --dry-run, 64 runs: median {dry:.3f} s over {args.reps} runs "
          f"(min {min(dry_times):.3f}, max {max(dry_times):.3f})")
    print(f'python -c "import jax":          median {jax:.3f} s over {args.reps} runs '
          f"(min {min(jax_times):.3f}, max {max(jax_times):.3f})")
    print(f"ratio dry-run / import jax: {ratio:.2f} (target < {TARGET_RATIO}); "
          f"CPU-time ratio {cpu_ratio:.2f} (less sensitive to machine load)")
    print(f"jax modules imported by the dry run: {', '.join(jax_modules) if jax_modules else 'none'}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
