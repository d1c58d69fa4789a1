"""How a benchmark states a figure and its goal, machine-readably, for `make bench`'s summary table.

Each benchmark prints its own human-readable lines and, for every figure it
has a goal for, one line

    runix-bench: {"benchmark": "bench_dry_run", "figure": "dry run / import jax", "value": 0.41,
                  "goal": "< 0.5", "met": true}

(`goal` null and `met` null for a figure reported without a goal).
benchmarks/run_all.py collects those lines from every benchmark's output.
"""

from __future__ import annotations

import json
import operator
import pathlib
import sys

PREFIX = "runix-bench: "
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


def report(figure: str, value: float, goal: str | None = None, *, unit: str = "") -> bool:
    """Print the result line of one figure; `goal` is "<op> <number>" (e.g. "< 0.5", ">= 20"). Returns whether it was met."""
    met = None
    if goal is not None:
        op, _, target = goal.partition(" ")
        met = bool(_COMPARE[op](value, float(target)))
    line = {"benchmark": pathlib.Path(sys.argv[0]).stem, "figure": figure, "value": value, "unit": unit,
            "goal": goal, "met": met}
    print(PREFIX + json.dumps(line), flush=True)
    return met is not False


def parse(line: str) -> dict | None:
    """The result of one output line, or None when it is not a result line."""
    if not line.startswith(PREFIX):
        return None
    try:
        result = json.loads(line[len(PREFIX):])
    except json.JSONDecodeError:
        return None
    return result if isinstance(result, dict) and "figure" in result else None
