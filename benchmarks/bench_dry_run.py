"""Wall time of `runix compile DIR --dry-run` on a 64-run spec set, against `python -c "import jax"`.

Why: the dry run is what a user runs before every launch, on a laptop, to price
and check a 64-run ablation; it must feel instant and must never import jax.
The target: under half the time of importing jax alone, measured in the same
run on the same machine (so the ratio, not the seconds, is what is compared).

The spec set is the shipped specs/to_code: the "To Code, or Not To Code?"
suite, 64 runs of the 470M and 2.8B shapes on v5e-256 slices, read with its
lockfile (lockfiles/to_code.lock.json) as every compile is; its hf:// inputs
are unresolved here and listed as such. The command is exactly what a user
types, from the project root, so the project's default store is listed when
it exists (tests/cli/test_compile.py proves the dry run writes nothing).
Each command runs as a fresh subprocess (output to /dev/null), alternating
between the two so that machine load hits both alike; the median of `--reps`
runs is reported, in wall time (the target) and in CPU time (user + system of
the child, steadier on a busy machine). One extra run under `-X importtime`
checks that no jax module is imported.

Both commands run with Python's bytecode cache on (PYTHONDONTWRITEBYTECODE is
removed from the children's environment), as a user's Python runs them: with
it set, jax still loads the .pyc files pip compiled at install time while
runix's own modules (an editable install) were recompiled from source on
every run, which measured the compiler's compiler, not the compiler.

    .venv/bin/python benchmarks/bench_dry_run.py            # 7 reps each
    .venv/bin/python benchmarks/bench_dry_run.py --reps 15

Exit 1 when the ratio is not under 0.5 or jax was imported.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import time

from goals import report

TARGET_RATIO = 0.5

REPO = pathlib.Path(__file__).resolve().parents[1]
SPEC_SET = "specs/to_code"
RUNS = 64


def runix_executable() -> str:
    beside = pathlib.Path(sys.executable).with_name("runix")
    found = str(beside) if beside.exists() else shutil.which("runix")
    if not found:
        raise SystemExit("runix is not installed (pip install -e . in the project's venv)")
    return found


CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `command` in a fresh process, from the project root."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=REPO, env=CHILD_ENV)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="timed runs of each command (median reported)")
    args = parser.parse_args(argv)

    dry_run = [runix_executable(), "compile", SPEC_SET, "--dry-run"]
    import_jax = [sys.executable, "-c", "import jax"]

    check = subprocess.run(dry_run, capture_output=True, text=True, cwd=REPO)
    if check.returncode != 0 or f"plan: {RUNS} runs" not in check.stdout:
        print(check.stdout[-2000:], check.stderr[-2000:], sep="\n")
        raise SystemExit(f"{SPEC_SET} did not compile to {RUNS} runs (is its lockfile fresh?)")
    traced = subprocess.run([sys.executable, "-X", "importtime", "-m", "compiler.cli", *dry_run[1:]],
                            capture_output=True, text=True, cwd=REPO)
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
    print(f"runix compile {SPEC_SET} --dry-run, {RUNS} runs: median {dry:.3f} s over {args.reps} runs "
          f"(min {min(dry_times):.3f}, max {max(dry_times):.3f})")
    print(f'python -c "import jax":          median {jax:.3f} s over {args.reps} runs '
          f"(min {min(jax_times):.3f}, max {max(jax_times):.3f})")
    print(f"ratio dry-run / import jax: {ratio:.2f} (target < {TARGET_RATIO}); "
          f"CPU-time ratio {cpu_ratio:.2f} (less sensitive to machine load)")
    print(f"jax modules imported by the dry run: {', '.join(jax_modules) if jax_modules else 'none'}")
    report("dry run / import jax (wall, median)", round(ratio, 3), f"< {TARGET_RATIO}")
    report("dry run / import jax (CPU time, median)", round(cpu_ratio, 3))
    report("jax modules imported by the dry run", len(jax_modules), "== 0")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
