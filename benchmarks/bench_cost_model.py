"""Refit the step-time model's constants and print every published point's leave-one-out error.

    .venv/bin/python benchmarks/bench_cost_model.py           # fit, leave-one-out table, compare with the stored constants
    .venv/bin/python benchmarks/bench_cost_model.py --write   # also store the refit in compiler/step_time.json

For each accelerator family with measurements (compiler/step_time.json), the
constants of compiler.step_time are fitted on all of its points; then each
point is predicted by a fit on the others (leave-one-out), which is the
error to expect on a model shape nobody has measured. The baseline, measured
in the same run on the same points, is the flat price the dry run used
before: one MFU per accelerator (compiler.hardware's default_mfu); the ratio
printed is the flat price's mean error (it is fitted to nothing) over the
model's mean leave-one-out error (above 1: the size-aware model is better
even on points it has not seen).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compiler import step_time  # noqa: E402
from compiler.hardware import profile  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="store the refit constants in compiler/step_time.json")
    args = parser.parse_args(argv)
    data = step_time.load()
    raw = json.loads(step_time.DATA_FILE.read_text(encoding="utf-8"))
    drift = False
    for family, spec in data.families.items():
        points = data.family_points(family)
        if not points:
            print(f"== {family}: no measurements of its own ({spec.get('note', '')})\n")
            continue
        tie = bool(spec.get("tie_attention"))
        fitted = step_time.fit_points(points, tie)
        theta = fitted.theta
        stored = step_time.Constants.from_json(spec["constants"]) if spec.get("constants") else None
        print(f"== {family}: {len(points)} points on {', '.join(sorted({p.chip for p in points}))}")
        print(f"   fitted constants: {fitted.to_json()}")
        if stored is None or stored.to_json() != fitted.to_json():
            drift = True
            print(f"   stored constants: {spec.get('constants')}  (differ: rerun with --write)")
        print(f"   {'point':<24} {'chip':<9} {'tok/s/chip':>11} {'fit':>7} {'LOO':>7} {'flat':>7} {'MFU':>6}")
        loo = step_time.leave_one_out(points, tie)
        fit_errors, loo_errors, flat_errors = [], [], []
        for point, predicted, error in loo:
            hw = profile(point.chip)
            in_fit = step_time._dot(point.terms(), theta) / point.seconds_per_token - 1
            flat = point.shape.model_flops_per_token / (hw.peak_flops * hw.default_mfu) / point.seconds_per_token - 1
            mfu = point.shape.model_flops_per_token * point.tokens_per_s_per_chip / hw.peak_flops
            fit_errors.append(abs(in_fit))
            loo_errors.append(abs(error))
            flat_errors.append(abs(flat))
            print(f"   {point.id:<24} {point.chip:<9} {point.tokens_per_s_per_chip:>11,.0f} {in_fit:>+7.1%} {error:>+7.1%} "
                  f"{flat:>+7.1%} {mfu:>6.1%}")
        print(f"   mean |error|: fit {statistics.fmean(fit_errors):.1%}, leave-one-out {statistics.fmean(loo_errors):.1%}, "
              f"flat default MFU {statistics.fmean(flat_errors):.1%}")
        print(f"   ratio flat / leave-one-out: {statistics.fmean(flat_errors) / statistics.fmean(loo_errors):.2f}x\n")
        raw["families"][family]["constants"] = fitted.to_json()
    if args.write:
        step_time.DATA_FILE.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {step_time.DATA_FILE}")
    elif drift:
        print("the stored constants differ from this fit: run with --write to store it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
