"""Price an unbuilt run from built ones, build it, and compare: the calibrated price against what the run measures.

    .venv/bin/python benchmarks/bench_cost_calibration.py            # 3 rounds (median of 3)
    .venv/bin/python benchmarks/bench_cost_calibration.py --rounds 5

The acceptance check of the cost model's calibration (compiler.pricing,
compiler.calibration), on CPU twins of the tiny spec set, through the real
CLI in temporary stores:

  each round, in a fresh store:
  1. build two calibration runs: 30 steps each, all text and all code
     (`runix launch`);
  2. price the target — the tiny shape with another length (60 steps) and
     another mixture (80% code, 20% markup), never built — with `runix
     compile --json`, which prices it from the built runs' timing records;
  3. build it and read what it measured (its timing.json: trainer wall
     seconds × chips, the chip-hours its build cost);
  then print each round's ratio calibrated price ÷ measured, and the median.
Calibration and target are built minutes apart in the same round, so a
change of the machine's load between rounds hits both.

The baseline, in the same rounds, is the same dry run against an empty store:
the step-time model alone (no measurement of this machine). Exit 1 when the
median calibrated ratio is outside [0.7, 1.3] (±30%).

The machine is shared: builds take what they get, and the load is printed
with each round, since a busy machine moves both the calibration runs' and
the target's seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNIX = Path(sys.executable).with_name("runix")
DATA_ROOT = REPO / ".runix" / "data"
TOLERANCE = 0.30

BASE = """\
  - name: bench-base
    abstract: true
    model: {preset: tiny}
    batch: {sequences: 8, sequence_length: 128}
    optimizer: {b1: 0.9, b2: 0.95, weight_decay: 0.1, clip_norm: 1.0}
    mesh: {accelerator: cpu, chips: 1}
    checkpoint: {every: 20, keep: 2, digest_every: 10}
    init: {kind: scratch, initializer: truncated_normal, seed: 0}
    schedule:
      phases:
        - {kind: warmup, length: 5, peak: 3e-3}
        - {kind: cosine, floor: 3e-4}
"""
CALIBRATION = "runs:\n" + BASE + """\
  - name: bench-calib-{code}
    extends: bench-base
    steps: 30
    data:
      seed: 0
      sources:
        text: {uri: "builtin://text", role: text, max_repeats: 8}
        code: {uri: "builtin://code", role: code, max_repeats: 8}
    matrix:
      code:
        "0":   {data: {sources: {code: {share: 0.0}, text: {share: 1.0}}}}
        "100": {data: {sources: {code: {share: 1.0}, text: {share: 0.0}}}}
"""
TARGET = "runs:\n" + BASE + """\
  - name: bench-target
    extends: bench-base
    steps: 60
    data:
      seed: 0
      sources:
        code: {uri: "builtin://code", role: code, share: 0.8, max_repeats: 8}
        markup: {uri: "builtin://markup", role: markup, share: 0.2, max_repeats: 8}
"""


def runix(*args: str, timeout: float = 1200) -> str:
    result = subprocess.run([str(RUNIX), *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "COLUMNS": "200"})
    if result.returncode != 0:
        sys.exit(f"runix {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def spec_set(folder: Path, text: str) -> tuple[str, str]:
    """Write and lock a spec set; returns (path, lockfile)."""
    folder.mkdir(parents=True)
    (folder / "runs.yaml").write_text(text, encoding="utf-8")
    lockfile = str(folder.with_suffix(".lock.json"))
    runix("lock", str(folder), "--lockfile", lockfile, "--data-root", str(DATA_ROOT))
    return str(folder), lockfile


def price(path: str, lockfile: str, store: Path) -> dict:
    plan = json.loads(runix("compile", path, "--json", "--lockfile", lockfile, "--store", str(store)))
    [run] = plan["runs"]
    return run


def measured(store: Path, run_hash: str) -> dict:
    [entry] = [p for p in store.iterdir() if p.name.startswith(run_hash)]
    return json.loads((entry / "timing.json").read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="runix-bench-cost-") as tmp:
        root = Path(tmp)
        calib, calib_lock = spec_set(root / "calibration", CALIBRATION)
        target, target_lock = spec_set(root / "target", TARGET)
        empty = root / "store-empty"
        empty.mkdir()
        calibrated_ratios, model_ratios = [], []
        for i in range(args.rounds):
            store = root / f"store-{i}"
            print(f"round {i + 1}: building the calibration runs (2 × 30 steps), load {os.getloadavg()[0]:.1f}", flush=True)
            runix("launch", calib, "--lockfile", calib_lock, "--data-root", str(DATA_ROOT), "--store", str(store))
            model = price(target, target_lock, empty)
            priced = price(target, target_lock, store)
            load = os.getloadavg()[0]
            runix("launch", target, "--lockfile", target_lock, "--data-root", str(DATA_ROOT), "--store", str(store))
            timing = measured(store, priced["hash"])
            calibrated_ratios.append(priced["total_chip_hours"] / timing["chip_hours"])
            model_ratios.append(model["total_chip_hours"] / timing["chip_hours"])
            print(f"round {i + 1}: load {load:.1f}→{os.getloadavg()[0]:.1f}; measured {timing['chip_hours']:.3g} chip-h "
                  f"({timing['wall_seconds']:.1f} s: median step {timing['step_seconds_median'] * 1e3:.1f} ms × "
                  f"{timing['steps']}, compile {timing['compile_seconds']:.1f} s, startup {timing['startup_seconds']:.1f} s, "
                  f"{timing['checkpoint_saves']} saves); calibrated price {priced['total_chip_hours']:.3g} "
                  f"({priced['price']['source']}×{priced['price']['built_runs']}, MFU {priced['mfu']:.3f}) → "
                  f"{calibrated_ratios[-1]:.2f}×; model alone {model['total_chip_hours']:.3g} → {model_ratios[-1]:.2f}×",
                  flush=True)
        calibrated, baseline = statistics.median(calibrated_ratios), statistics.median(model_ratios)
        print(f"calibrated price ÷ measured, median of {args.rounds}: {calibrated:.2f}× "
              f"(baseline, the uncalibrated model: {baseline:.2f}×)")
        ok = abs(calibrated - 1) <= TOLERANCE
        print("within ±30%" if ok else "OUTSIDE ±30%")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
